// Address normalisation for matching: simple Unicode case folding and IDNA A-labels
// ("xn--...", RFC 3492 Punycode) decoded to UTF-8, so "Bob@XN--BCHER-KVA.example" and
// "bob@bücher.example" compare equal.
#include "protocols/mime/addresses.hpp"
#include "protocols/mime/detail.hpp"
#include "protocols/mime/message.hpp"

#include <cstdint>

namespace mscan::mime {
namespace detail {
namespace {

// Decodes UTF-8 (valid input assumed; callers pass cleaned strings) into code points.
std::u32string to_code_points(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    char32_t cp = 0;
    std::size_t n = 1;
    if (c < 0x80) cp = c;
    else if ((c >> 5) == 0x6) { cp = c & 0x1F; n = 2; }
    else if ((c >> 4) == 0xE) { cp = c & 0x0F; n = 3; }
    else if ((c >> 3) == 0x1E) { cp = c & 0x07; n = 4; }
    else { out.push_back(0xFFFD); ++i; continue; }
    if (i + n > s.size()) { out.push_back(0xFFFD); break; }
    for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return out;
}

// Lower-case mapping for the scripts mail addresses use most (Latin, Greek, Cyrillic);
// not full Unicode case folding, which would need ICU.
char32_t fold(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if (c <= 0xDE && c != 0xD7) return c + 32;                        // Latin-1 À..Þ
  if (c >= 0x100 && c <= 0x17F) {                                      // Latin Extended-A
    bool odd_lower = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_lower) return (c % 2 == 1) ? c + 1 : c;
    if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149 || c == 0x178 || c == 0x17F) return c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;           // Greek
  if (c >= 0x410 && c <= 0x42F) return c + 32;                         // Cyrillic А..Я
  if (c >= 0x400 && c <= 0x40F) return c + 80;                         // Cyrillic Ѐ..Џ
  return c;
}

constexpr std::uint32_t base = 36, tmin = 1, tmax = 26, skew = 38, damp = 700;

std::uint32_t adapt(std::uint32_t delta, std::uint32_t points, bool first) {
  delta = first ? delta / damp : delta / 2;
  delta += delta / points;
  std::uint32_t k = 0;
  while (delta > ((base - tmin) * tmax) / 2) {
    delta /= base - tmin;
    k += base;
  }
  return k + (base - tmin + 1) * delta / (delta + skew);
}

// RFC 3492 decoding of the part after "xn--"; false on malformed input.
bool punycode_decode(std::string_view in, std::u32string& out) {
  out.clear();
  std::size_t delim = in.rfind('-');
  std::size_t pos = 0;
  if (delim != std::string_view::npos) {
    for (std::size_t k = 0; k < delim; ++k) {
      if (static_cast<unsigned char>(in[k]) >= 0x80) return false;
      out.push_back(static_cast<unsigned char>(in[k]));
    }
    pos = delim + 1;
  }
  std::uint32_t n = 128, i = 0, bias = 72;
  while (pos < in.size()) {
    std::uint32_t old_i = i, w = 1;
    for (std::uint32_t k = base;; k += base) {
      if (pos >= in.size()) return false;
      char c = ascii_lower(in[pos++]);
      std::uint32_t digit = c >= 'a' && c <= 'z' ? std::uint32_t(c - 'a')
                            : c >= '0' && c <= '9' ? std::uint32_t(c - '0' + 26)
                                                   : base;
      if (digit >= base) return false;
      if (digit > (0xFFFFFFFFu - i) / w) return false;
      i += digit * w;
      std::uint32_t t = k <= bias ? tmin : k >= bias + tmax ? tmax : k - bias;
      if (digit < t) break;
      if (w > 0xFFFFFFFFu / (base - t)) return false;
      w *= base - t;
    }
    std::uint32_t len = std::uint32_t(out.size()) + 1;
    bias = adapt(i - old_i, len, old_i == 0);
    if (i / len > 0x10FFFFu - n) return false;
    n += i / len;
    i %= len;
    if (n > 0x10FFFF || out.size() > 255) return false;
    out.insert(out.begin() + i, char32_t(n));
    ++i;
  }
  return true;
}

// Appends s case-folded. Addresses are nearly always ASCII: those skip the per-label
// code-point string (an allocation per label, two to four per address).
void append_folded(std::string& out, std::string_view s) {
  bool ascii = true;
  for (char c : s) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii) {
    for (char c : s) out.push_back(ascii_lower(c));
    return;
  }
  for (char32_t c : to_code_points(s)) append_utf8(out, fold(c));
}

} // namespace

std::string normalize_for_matching(std::string_view email, bool strip_subaddress) {
  std::size_t at = email.rfind('@');
  std::string_view local = at == std::string_view::npos ? email : email.substr(0, at);
  std::string out;
  out.reserve(email.size() + 8);
  append_folded(out, local);
  if (strip_subaddress) {
    auto plus = out.find('+');
    if (plus != std::string::npos && plus > 0) out.resize(plus);
  }
  if (at == std::string_view::npos) return out;
  out.push_back('@');
  std::string_view domain = email.substr(at + 1);
  std::u32string decoded;
  while (true) {
    std::size_t dot = domain.find('.');
    std::string_view label = domain.substr(0, dot);
    if (label.size() > 4 && istarts_with(label, "xn--") && punycode_decode(label.substr(4), decoded)) {
      for (char32_t c : decoded) append_utf8(out, fold(c));
    } else {
      append_folded(out, label);
    }
    if (dot == std::string_view::npos) break;
    out.push_back('.');
    domain.remove_prefix(dot + 1);
  }
  return out;
}

} // namespace detail

std::string normalize_email(std::string_view email, const parse_options& opts) {
  std::string clean = detail::is_valid_utf8(email) ? std::string(email) : detail::utf8_lossy(email);
  return detail::normalize_for_matching(clean, opts.strip_subaddress);
}

} // namespace mscan::mime
