// libFuzzer target for the IMAP response parser.
// The first 4 input bytes choose the chunk sizes; the rest is the server byte stream. The
// stream is parsed whole and in those chunks: both must give identical responses (or the
// identical error), so any chunking bug is a finding, not only crashes.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "tests/unit/imap/parser_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  const std::size_t sizes[4] = {std::size_t{data[0]} % 17 + 1, std::size_t{data[1]} + 1,
                                std::size_t{data[2]} % 5 + 1, std::size_t{data[3]} * 7 + 1};
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 4, size - 4);
  // Small limits so that the fuzzer reaches every limit check quickly.
  mscan::imap::parser_limits limits;
  limits.max_line_length = 512;
  limits.max_literal_size = 2048;
  limits.max_response_size = 8192;
  limits.max_depth = 6;
  limits.max_items = 300;
  std::vector<std::string_view> chunks;
  for (std::size_t pos = 0, k = 0; pos < bytes.size(); ++k) {
    const std::size_t n = std::min(sizes[k % 4], bytes.size() - pos);
    chunks.push_back(bytes.substr(pos, n));
    pos += n;
  }
  const auto whole = mscan::imap::test::parse_whole(bytes, limits);
  const auto chunked = mscan::imap::test::parse_chunks(chunks, limits);
  if (!mscan::imap::test::same(whole, chunked)) std::abort();
  return 0;
}
