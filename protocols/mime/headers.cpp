// Header block splitting, unfolding, RFC 2047 encoded words, RFC 2045/2231 parameters and the
// transfer decodings. Everything is a single forward pass over string_views.
#include "protocols/mime/detail.hpp"
#include "protocols/mime/message.hpp"

#include <algorithm>
#include <cstring>

namespace mscan::mime {
namespace detail {

const header_field* header_block::find(std::string_view name) const {
  for (const auto& f : fields)
    if (iequals(f.name, name)) return &f;
  return nullptr;
}

namespace {

// Field name characters: printable ASCII except ':' (RFC 5322 ftext).
bool valid_field_name(std::string_view n) {
  if (n.empty()) return false;
  for (char c : n) {
    auto u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126) return false;
  }
  return true;
}

struct line_cursor {
  std::string_view s;
  std::size_t pos = 0;
  bool done() const { return pos >= s.size(); }
  // Returns the line without its terminator; `next` = start of the following line.
  std::string_view peek(std::size_t& next) const {
    std::size_t nl = s.find('\n', pos);
    std::size_t end = nl == std::string_view::npos ? s.size() : nl;
    next = nl == std::string_view::npos ? s.size() : nl + 1;
    std::string_view line = s.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  }
};

// "Name :" -> name (obsolete syntax allows WSP before the colon); empty when not a field.
std::string_view field_name_of(std::string_view line, std::size_t& colon) {
  colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return {};
  std::string_view n = line.substr(0, colon);
  while (!n.empty() && is_wsp(n.back())) n.remove_suffix(1);
  return valid_field_name(n) ? n : std::string_view{};
}

bool blank(std::string_view line) {
  for (char c : line)
    if (!is_wsp(c) && c != '\r') return false;
  return true;
}

} // namespace

header_block split_headers(std::string_view raw, std::size_t max_headers) {
  header_block hb;
  hb.fields.reserve(std::min<std::size_t>(max_headers, 24));  // one allocation for most blocks, not five
  line_cursor cur{raw};
  std::size_t next = 0;
  // mbox "From " envelope line.
  if (raw.substr(0, 5) == "From ") {
    cur.peek(next);
    cur.pos = next;
  }
  bool have_current = false;     // a stored field is open for continuation lines
  bool skipping_current = false; // a field past max_headers is open
  std::size_t value_start = 0, value_end = 0;
  std::string_view cur_name;
  auto close_field = [&]() {
    if (have_current) {
      std::string_view v = raw.substr(value_start, value_end - value_start);
      while (!v.empty() && is_wsp(v.front())) v.remove_prefix(1);
      hb.fields.push_back({cur_name, v});
    }
    have_current = false;
    skipping_current = false;
  };
  while (!cur.done()) {
    std::string_view line = cur.peek(next);
    std::size_t line_start = cur.pos;
    std::size_t line_end = line_start + line.size();
    if (line.empty()) {
      close_field();
      hb.body = raw.substr(next);
      return hb;
    }
    if (is_wsp(line.front())) {
      if (blank(line)) {
        // A whitespace-only line is folding only when more header follows; otherwise it is
        // the (broken) separator that some mailers write.
        std::size_t after = 0;
        line_cursor look{raw, next};
        std::string_view nl = look.done() ? std::string_view{} : look.peek(after);
        std::size_t colon = 0;
        bool more = !look.done() && !nl.empty() &&
                    (is_wsp(nl.front()) || !field_name_of(nl, colon).empty());
        if (!more) {
          close_field();
          hb.missing_separator = true;
          hb.body = raw.substr(next);
          return hb;
        }
      }
      if (have_current) {
        value_end = line_end;
        cur.pos = next;
        continue;
      }
      if (skipping_current) {
        cur.pos = next;
        continue;
      }
      // Continuation with nothing to continue (first line starts with WSP): read it as a
      // field of its own when it looks like one.
      std::string_view t = line;
      while (!t.empty() && is_wsp(t.front())) t.remove_prefix(1);
      std::size_t colon = 0;
      if (field_name_of(t, colon).empty()) {
        cur.pos = next;
        continue;
      }
      line = t;
      line_start = line_end - t.size();
    }
    std::size_t colon = 0;
    std::string_view name = field_name_of(line, colon);
    if (name.empty()) {
      // Not a header field: the body starts here (missing separator).
      close_field();
      hb.missing_separator = true;
      hb.body = raw.substr(line_start);
      return hb;
    }
    close_field();
    if (hb.fields.size() >= max_headers) {
      hb.truncated = true;
      skipping_current = true;
    } else {
      have_current = true;
      cur_name = raw.substr(line_start, name.size());
      value_start = line_start + colon + 1;
      value_end = line_end;
    }
    cur.pos = next;
  }
  close_field();
  hb.body = std::string_view{};
  return hb;
}

std::string_view unfold(std::string_view raw, std::string& scratch) {
  if (raw.find_first_of("\r\n") == std::string_view::npos) return trim(raw);
  scratch.clear();
  scratch.reserve(raw.size());
  std::size_t pos = 0;
  while (pos < raw.size()) { // copy the runs between line breaks, not byte by byte
    std::size_t brk = raw.find_first_of("\r\n", pos);
    if (brk == std::string_view::npos) brk = raw.size();
    scratch.append(raw.data() + pos, brk - pos);
    pos = brk + 1;
  }
  return trim(std::string_view(scratch));
}

std::string raw_header_to_utf8(std::string_view s, std::string_view fallback_charset, bool* lossy) {
  if (is_valid_utf8(s)) return std::string(s);
  if (looks_like_utf8(s)) {
    if (lossy) *lossy = true;
    return utf8_lossy(s);
  }
  bool l = false;
  std::string out =
      to_utf8(s, fallback_charset.empty() ? std::string_view("windows-1252") : fallback_charset, &l);
  if (lossy && l) *lossy = true;
  return out;
}

namespace {

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void decode_q(std::string_view in, std::string& out) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '_') out.push_back(' ');
    else if (c == '=' && i + 2 < in.size() + 0 && hexval(in[i + 1]) >= 0 &&
             hexval(in[i + 2]) >= 0) {
      out.push_back(char(hexval(in[i + 1]) * 16 + hexval(in[i + 2])));
      i += 2;
    } else out.push_back(c);
  }
}

bool ew_charset_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 32 && u < 127 && c != '?' && c != '"' && c != '(' && c != ')' && c != ',';
}

// Parses "=?cs?e?text?=" at s[pos]; on success fills parts and returns the end offset.
std::size_t parse_encoded_word(std::string_view s, std::size_t pos, std::size_t close_hint,
                               std::string_view& cs, char& enc, std::string_view& text) {
  std::size_t i = pos + 2;
  std::size_t cs_start = i;
  while (i < s.size() && ew_charset_char(s[i]) && i - cs_start < 64) ++i;
  if (i == cs_start || i + 3 >= s.size() || s[i] != '?') return 0;
  cs = s.substr(cs_start, i - cs_start);
  enc = ascii_lower(s[i + 1]);
  if ((enc != 'q' && enc != 'b') || s[i + 2] != '?') return 0;
  std::size_t t0 = i + 3;
  std::size_t end = close_hint >= t0 ? close_hint : s.find("?=", t0);
  if (end == std::string_view::npos) return 0;
  text = s.substr(t0, end - t0);
  return end + 2;
}

} // namespace

std::string decode_header_text(std::string_view s, std::string_view fallback_charset, bool* lossy) {
  std::size_t first = s.find("=?");
  if (first == std::string_view::npos) return raw_header_to_utf8(s, fallback_charset, lossy);
  std::string out;
  out.reserve(s.size());
  std::string pending;          // decoded bytes of adjacent encoded words, same charset
  std::string_view pending_cs;  // their charset
  auto flush = [&]() {
    bool l = false;
    if (!pending.empty() || !pending_cs.empty()) out += to_utf8(pending, pending_cs, &l);
    if (lossy && l) *lossy = true;
    pending.clear();
    pending_cs = {};
  };
  std::size_t lit_start = 0;
  bool last_was_word = false;
  std::size_t scan = first;
  std::size_t cached_close = 0;
  while (scan != std::string_view::npos && scan < s.size()) {
    std::string_view cs, text;
    char enc = 0;
    std::size_t end = 0;
    {
      std::size_t i = scan + 2;
      while (i < s.size() && ew_charset_char(s[i]) && i - scan < 66) ++i;
      if (i + 2 < s.size() && s[i] == '?' && s[i + 2] == '?') {
        std::size_t t0 = i + 3;
        // Cache the next "?=" so hostile runs of "=?" stay linear.
        if (cached_close != std::string_view::npos && cached_close < t0)
          cached_close = s.find("?=", t0);
        if (cached_close == std::string_view::npos) break; // nothing later can terminate
        end = parse_encoded_word(s, scan, cached_close, cs, enc, text);
      }
    }
    if (end == 0) {
      scan = s.find("=?", scan + 1);
      continue;
    }
    std::string_view literal = s.substr(lit_start, scan - lit_start);
    bool only_ws = std::all_of(literal.begin(), literal.end(), [](char c) { return is_space(c); });
    if (!(last_was_word && only_ws)) {
      flush();
      out += raw_header_to_utf8(literal, fallback_charset, lossy);
    }
    std::string_view bare_cs = cs.substr(0, cs.find('*')); // RFC 2231 "charset*lang"
    if (!iequals(bare_cs, pending_cs)) flush();
    pending_cs = bare_cs;
    if (enc == 'b') decode_base64(text, pending);
    else decode_q(text, pending);
    last_was_word = true;
    lit_start = end;
    scan = s.find("=?", end);
  }
  flush();
  out += raw_header_to_utf8(s.substr(lit_start), fallback_charset, lossy);
  return out;
}

const std::string* structured_value::param(std::string_view name) const {
  for (const auto& p : params)
    if (p.name == name) return &p.value;
  return nullptr;
}

namespace {

std::string percent_decode(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '%' && i + 2 < v.size() + 0 && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
      out.push_back(char(hexval(v[i + 1]) * 16 + hexval(v[i + 2])));
      i += 2;
    } else out.push_back(v[i]);
  }
  return out;
}

struct raw_param {
  std::string name; // lower-case, without "*n*"
  int section = -1; // RFC 2231 continuation index, -1 when none
  bool extended = false;
  std::string value; // raw (unquoted) bytes
};

} // namespace

structured_value parse_structured(std::string_view s, std::string_view fallback_charset) {
  structured_value sv;
  std::size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  std::size_t v0 = i;
  while (i < s.size() && s[i] != ';' && !is_space(s[i])) ++i;
  sv.value = lower(s.substr(v0, i - v0));
  std::vector<raw_param> raws;
  while (i < s.size() && raws.size() < 64) {
    while (i < s.size() && (is_space(s[i]) || s[i] == ';')) ++i;
    std::size_t n0 = i;
    while (i < s.size() && s[i] != '=' && s[i] != ';' && !is_space(s[i])) ++i;
    std::string_view name = s.substr(n0, i - n0);
    std::size_t j = i;
    while (j < s.size() && is_space(s[j])) ++j;
    if (j >= s.size() || s[j] != '=' || name.empty()) {
      // stray word without "=": skip it
      if (i == n0) ++i;
      continue;
    }
    i = j + 1;
    while (i < s.size() && is_space(s[i])) ++i;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        value.push_back(s[i]);
        ++i;
      }
      if (i < s.size()) ++i; // closing quote (unterminated: value runs to the end)
    } else {
      std::size_t a = i;
      while (i < s.size() && s[i] != ';') ++i;
      std::string_view v = trim(s.substr(a, i - a));
      // A missing ";" between parameters: cut at whitespace followed by "token=".
      for (std::size_t k = 0; k < v.size(); ++k) {
        if (!is_space(v[k])) continue;
        std::size_t t = k;
        while (t < v.size() && is_space(v[t])) ++t;
        std::size_t u = t;
        while (u < v.size() && v[u] != '=' && !is_space(v[u]) && v[u] != '"') ++u;
        if (u > t && u < v.size() && v[u] == '=') {
          i = a + t; // resume parsing at the next parameter
          v = trim(v.substr(0, k));
          break;
        }
        k = u > k ? u - 1 : k; // each word is looked at once: linear

      }
      value.assign(v);
    }
    raw_param rp;
    std::string lname = lower(name);
    if (!lname.empty() && lname.back() == '*') {
      rp.extended = true;
      lname.pop_back();
    }
    if (auto star = lname.find('*'); star != std::string::npos) {
      std::string_view idx = std::string_view(lname).substr(star + 1);
      int n = 0;
      bool ok = !idx.empty() && idx.size() < 5; // at most 9999 sections: no overflow below
      for (std::size_t k = 0; ok && k < idx.size(); ++k) {
        if (idx[k] < '0' || idx[k] > '9') ok = false;
        else n = n * 10 + (idx[k] - '0');
      }
      if (ok) {
        rp.section = n;
        lname.resize(star);
      }
    }
    rp.name = std::move(lname);
    rp.value = std::move(value);
    raws.push_back(std::move(rp));
  }
  // Assemble: plain parameters keep their first occurrence; RFC 2231 forms win over plain.
  std::vector<std::string> done;
  for (std::size_t k = 0; k < raws.size(); ++k) {
    const std::string& name = raws[k].name;
    if (std::find(done.begin(), done.end(), name) != done.end()) continue;
    done.push_back(name);
    std::vector<const raw_param*> secs;
    const raw_param* plain = nullptr;
    const raw_param* ext_single = nullptr;
    for (const auto& r : raws) {
      if (r.name != name) continue;
      if (r.section >= 0) secs.push_back(&r);
      else if (r.extended) { if (!ext_single) ext_single = &r; }
      else if (!plain) plain = &r;
    }
    std::string value;
    if (!secs.empty() || ext_single) {
      if (secs.empty()) secs.push_back(ext_single);
      std::stable_sort(secs.begin(), secs.end(),
                       [](auto* a, auto* b) { return a->section < b->section; });
      std::string charset, bytes;
      for (std::size_t q = 0; q < secs.size(); ++q) {
        std::string_view v = secs[q]->value;
        if (secs[q]->extended) {
          if (q == 0) {
            auto a1 = v.find('\'');
            auto a2 = a1 == std::string_view::npos ? a1 : v.find('\'', a1 + 1);
            if (a2 != std::string_view::npos) {
              charset.assign(v.substr(0, a1));
              v = v.substr(a2 + 1);
            }
          }
          bytes += percent_decode(v);
        } else {
          bytes.append(v);
        }
      }
      value = charset.empty() ? decode_header_text(bytes, fallback_charset) : to_utf8(bytes, charset);
    } else if (plain) {
      // RFC 2047 inside parameters is non-standard but common (Outlook, Thunderbird).
      value = decode_header_text(plain->value, fallback_charset);
    }
    sv.params.push_back({name, std::move(value)});
  }
  return sv;
}

namespace {

constexpr signed char b64_table[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62,
    -1, 62, -1, 63, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1, -1, 0,
    1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
    23, 24, 25, -1, -1, -1, -1, 63, -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38,
    39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};

} // namespace

// Skips everything outside the alphabet ('+', '/', and the URL-safe '-', '_'); '=' ends a
// quantum but decoding goes on (concatenated base64 blobs exist in the wild).
void decode_base64(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    int v = b64_table[static_cast<unsigned char>(ch)];
    if (v < 0) {
      if (ch == '=') {
        acc = 0;
        bits = 0;
      }
      continue;
    }
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xFF));
    }
  }
}

// Estimate from line lengths (exact for well-formed base64): counting the alphabet byte by
// byte would cost as much as decoding, and attachments are never decoded.
std::size_t base64_decoded_size(std::string_view in) {
  std::size_t chars = 0, pos = 0;
  while (pos < in.size()) {
    const void* nl = std::memchr(in.data() + pos, '\n', in.size() - pos);
    std::size_t end = nl ? std::size_t(static_cast<const char*>(nl) - in.data()) : in.size();
    std::string_view line = in.substr(pos, end - pos);
    while (!line.empty() && (is_space(line.back()) || line.back() == '=')) line.remove_suffix(1);
    while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
    chars += line.size();
    pos = end + 1;
  }
  return chars * 3 / 4;
}

void decode_quoted_printable(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size());
  std::size_t i = 0;
  while (i < in.size()) {
    const char* p = static_cast<const char*>(std::memchr(in.data() + i, '=', in.size() - i));
    std::size_t eq = p ? std::size_t(p - in.data()) : in.size();
    out.append(in.substr(i, eq - i));
    if (eq >= in.size()) break;
    i = eq + 1;
    // soft line break: "=" [WSP] CRLF|LF
    std::size_t j = i;
    while (j < in.size() && is_wsp(in[j])) ++j;
    if (j < in.size() && (in[j] == '\n' || in[j] == '\r')) {
      if (in[j] == '\r' && j + 1 < in.size() && in[j + 1] == '\n') ++j;
      i = j + 1;
      continue;
    }
    if (j >= in.size()) {
      i = j;
      break;
    }
    if (i + 1 < in.size() && hexval(in[i]) >= 0 && hexval(in[i + 1]) >= 0) {
      out.push_back(char(hexval(in[i]) * 16 + hexval(in[i + 1])));
      i += 2;
    } else {
      out.push_back('='); // invalid escape: keep literally
    }
  }
}

} // namespace detail

std::string decode_encoded_words(std::string_view header_value) {
  std::string scratch;
  return detail::decode_header_text(detail::unfold(header_value, scratch), "");
}

} // namespace mscan::mime
