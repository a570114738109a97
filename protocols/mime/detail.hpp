#pragma once
// Internal building blocks of the MIME parser (not part of the public API).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mscan::mime::detail {

inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }
inline bool is_wsp(char c) { return c == ' ' || c == '\t'; }
inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
// ASCII case-insensitive equality; inline because header dispatch calls it per field.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}
bool istarts_with(std::string_view s, std::string_view prefix);
std::string lower(std::string_view s);
std::string_view trim(std::string_view s);
bool is_valid_utf8(std::string_view s);
// Mostly-UTF-8 text (more valid multi-byte sequences than stray bytes)?
bool looks_like_utf8(std::string_view s);
// Valid UTF-8 kept, each invalid byte replaced by U+FFFD.
std::string utf8_lossy(std::string_view s);
void append_utf8(std::string& out, char32_t cp);

// One header field as found: name and raw value (folding CR/LF kept, leading WSP dropped).
struct header_field {
  std::string_view name;
  std::string_view value;
};

struct header_block {
  std::vector<header_field> fields;
  std::string_view body;      // everything after the header/body separator
  bool truncated = false;     // more than max_headers fields (the rest were skipped)
  bool missing_separator = false;
  const header_field* find(std::string_view name) const; // first occurrence
};

// Splits header fields from the body. Linear; stops storing fields after max_headers.
header_block split_headers(std::string_view raw, std::size_t max_headers);

// Unfolds a raw value (drops CR/LF); returns a view when nothing needs to change.
std::string_view unfold(std::string_view raw, std::string& scratch);

// Header text as UTF-8: raw 8-bit bytes are kept when valid UTF-8, else decoded with the
// fallback charset; then RFC 2047 encoded words are decoded.
// `lossy` (when given) is set when a charset was unknown or bytes were invalid in it.
std::string decode_header_text(std::string_view unfolded, std::string_view fallback_charset,
                               bool* lossy = nullptr);
std::string raw_header_to_utf8(std::string_view s, std::string_view fallback_charset,
                               bool* lossy = nullptr);

// Content-Type / Content-Disposition style value: "type/subtype; p=v; q*=utf-8''x".
struct parameter {
  std::string name;  // lower-case
  std::string value; // decoded UTF-8 (RFC 2231 / RFC 2047 in quotes)
};
struct structured_value {
  std::string value; // lower-case, trimmed ("multipart/mixed", "attachment")
  std::vector<parameter> params;
  const std::string* param(std::string_view name) const;
};
structured_value parse_structured(std::string_view unfolded, std::string_view fallback_charset);

// Transfer decodings; all tolerant of bad input and linear.
void decode_base64(std::string_view in, std::string& out);
std::size_t base64_decoded_size(std::string_view in);
void decode_quoted_printable(std::string_view in, std::string& out);

// parse_date's two halves: the fast path for the canonical form "[Dow, ]D Mon YYYY
// HH:MM[:SS] +ZZZZ" (nullopt for anything else) and the general parser (tests compare them).
std::optional<std::int64_t> parse_canonical_date(std::string_view value);
std::optional<std::int64_t> parse_date_general(std::string_view value);

} // namespace mscan::mime::detail
