// libFuzzer target for deflate_stream (COMPRESS=DEFLATE, RFC 4978): the input is what a
// hostile server sends after COMPRESS. Byte 0 picks the chunk size the input is fed in.
// Checked: no crash, no piece larger than the chunk asked for, a failed stream stays failed,
// and whatever the client deflates inflates back to itself.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocols/imap/deflate_stream.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  using mscan::imap::deflate_stream;
  const std::size_t chunk = std::size_t{data[0]} % 64 + 1;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  deflate_stream z;
  std::size_t total = 0;
  bool failed = false;
  for (std::size_t pos = 0; pos < in.size(); pos += chunk) {
    const bool ok = z.inflate(in.substr(pos, chunk), [&](std::string_view p) {
      if (p.size() > 4096) std::abort();
      total += p.size();
    }, 4096);
    if (failed && ok) std::abort();
    failed = failed || !ok;
  }
  (void)total;
  deflate_stream a, b;
  std::string back;
  if (!b.inflate(a.deflate(in), [&](std::string_view p) { back += p; })) std::abort();
  if (back != in) std::abort();
  return 0;
}
