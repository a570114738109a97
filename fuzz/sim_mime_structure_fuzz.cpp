// libFuzzer target for the simulator's MIME splitter (bench/simulator/mime_structure): any
// file must parse without crash, hang or leak, its BODYSTRUCTURE must be one balanced
// parenthesised list, and every section it names must be a slice of the message.
#include "bench/simulator/mime_structure.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

// Parentheses outside quoted strings and literals balance and close at the very end.
void require_balanced(const std::string& s) {
  long depth = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      for (++i; i < s.size() && s[i] != '"'; ++i)
        if (s[i] == '\\') ++i;
    } else if (c == '{') {
      const auto close = s.find('}', i);
      if (close == std::string::npos) __builtin_trap();
      i = close + 2 + std::stoul(s.substr(i + 1, close - i - 1));  // "}" CRLF, then the bytes: the last one
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      if (--depth < 0) __builtin_trap();
      if (depth == 0 && i + 1 != s.size()) __builtin_trap();
    }
  }
  if (depth != 0) __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string raw(reinterpret_cast<const char*>(data), size);
  const auto root = mscan::sim::parse_entity(raw);
  require_balanced(mscan::sim::body_structure(root));
  for (const char* spec : {"", "HEADER", "TEXT", "1", "2", "1.MIME", "1.1", "1.2.MIME", "2.HEADER", "2.TEXT",
                           "1.1.1.1", "3.2.1.TEXT"}) {
    const auto part = mscan::sim::section_of(root, spec);
    if (!part.empty() && raw.find(part) == std::string::npos) __builtin_trap();
  }
  return 0;
}
