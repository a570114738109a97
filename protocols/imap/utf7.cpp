#include "protocols/imap/utf7.hpp"

#include <cstdint>
#include <vector>

namespace mscan::imap {

namespace {

constexpr char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes one UTF-8 code point at s[i]; advances i. Rejects overlongs and surrogates.
bool next_code_point(std::string_view s, std::size_t& i, std::uint32_t& cp) {
  const auto c = static_cast<unsigned char>(s[i]);
  int extra = 0;
  std::uint32_t min = 0;
  if (c < 0x80) { cp = c; ++i; return true; }
  if ((c & 0xE0) == 0xC0) { extra = 1; cp = c & 0x1F; min = 0x80; }
  else if ((c & 0xF0) == 0xE0) { extra = 2; cp = c & 0x0F; min = 0x800; }
  else if ((c & 0xF8) == 0xF0) { extra = 3; cp = c & 0x07; min = 0x10000; }
  else return false;
  if (i + static_cast<std::size_t>(extra) >= s.size()) return false;
  for (int k = 1; k <= extra; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
    if ((cc & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  i += static_cast<std::size_t>(extra) + 1;
  return true;
}

void flush_run(std::string& out, const std::vector<std::uint16_t>& units) {
  out += '&';
  std::uint32_t bits = 0;
  int nbits = 0;
  for (auto u : units) {
    bits = (bits << 16) | u;
    nbits += 16;
    while (nbits >= 6) {
      nbits -= 6;
      out += b64[(bits >> nbits) & 0x3F];
    }
    bits &= (1u << nbits) - 1;
  }
  if (nbits > 0) out += b64[(bits << (6 - nbits)) & 0x3F];
  out += '-';
}

} // namespace

expected<std::string, std::string> utf7_encode(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  std::vector<std::uint16_t> run;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t at = i;
    std::uint32_t cp = 0;
    if (!next_code_point(s, i, cp))
      return unexpected{std::string("invalid UTF-8 at byte ") + std::to_string(at)};
    if (cp >= 0x20 && cp <= 0x7E) {
      if (!run.empty()) {
        flush_run(out, run);
        run.clear();
      }
      if (cp == '&') out += "&-";
      else out += static_cast<char>(cp);
    } else if (cp >= 0x10000) {
      cp -= 0x10000;
      run.push_back(static_cast<std::uint16_t>(0xD800 | (cp >> 10)));
      run.push_back(static_cast<std::uint16_t>(0xDC00 | (cp & 0x3FF)));
    } else {
      run.push_back(static_cast<std::uint16_t>(cp));
    }
  }
  if (!run.empty()) flush_run(out, run);
  return out;
}

expected<std::string, std::string> utf7_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c > 0x7E) return unexpected{std::string("raw non-ASCII byte in modified UTF-7")};
    if (c != '&') {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    ++i;
    if (i < s.size() && s[i] == '-') {
      out += '&';
      ++i;
      continue;
    }
    std::uint32_t bits = 0;
    int nbits = 0;
    std::uint32_t high = 0;  // pending high surrogate
    bool any = false;
    while (i < s.size() && s[i] != '-') {
      const int v = b64_value(s[i]);
      if (v < 0) return unexpected{std::string("bad base64 in modified UTF-7")};
      bits = (bits << 6) | static_cast<std::uint32_t>(v);
      nbits += 6;
      ++i;
      if (nbits >= 16) {
        nbits -= 16;
        const std::uint32_t u = (bits >> nbits) & 0xFFFF;
        bits &= (1u << nbits) - 1;
        any = true;
        if (high) {
          if (u < 0xDC00 || u > 0xDFFF) return unexpected{std::string("unpaired surrogate")};
          append_utf8(out, 0x10000 + ((high - 0xD800) << 10) + (u - 0xDC00));
          high = 0;
        } else if (u >= 0xD800 && u <= 0xDBFF) {
          high = u;
        } else if (u >= 0xDC00 && u <= 0xDFFF) {
          return unexpected{std::string("unpaired surrogate")};
        } else {
          append_utf8(out, u);
        }
      }
    }
    if (i >= s.size()) return unexpected{std::string("unterminated modified UTF-7 shift")};
    ++i;  // '-'
    if (!any || high || nbits >= 6 || bits != 0)
      return unexpected{std::string("malformed modified UTF-7 shift")};
  }
  return out;
}

} // namespace mscan::imap
