// Charset conversion to UTF-8. Fast paths for UTF-8, US-ASCII and ISO-8859-1; everything
// else goes through glibc iconv with one cached descriptor per charset and thread (iconv_t
// is not thread-safe, and iconv_open costs far more than a conversion of a header).
#include "protocols/mime/detail.hpp"
#include "protocols/mime/message.hpp"

#include <iconv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

namespace mscan::mime {
namespace detail {

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when invalid/truncated.
std::size_t utf8_seq_len(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n = s.size() - i;
  if (c >= 0xC2 && c <= 0xDF) return (n >= 2 && (b(i + 1) & 0xC0) == 0x80) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (n < 3 || (b(i + 1) & 0xC0) != 0x80 || (b(i + 2) & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && b(i + 1) < 0xA0) return 0;
    if (c == 0xED && b(i + 1) >= 0xA0) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (n < 4 || (b(i + 1) & 0xC0) != 0x80 || (b(i + 2) & 0xC0) != 0x80 ||
        (b(i + 3) & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && b(i + 1) < 0x90) return 0;
    if (c == 0xF4 && b(i + 1) >= 0x90) return 0;
    return 4;
  }
  return 0;
}

} // namespace

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    // Skip ASCII runs eight bytes at a time: the common case in mail.
    while (i + 8 <= s.size()) {
      std::uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= s.size()) break;
    std::size_t n = utf8_seq_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

namespace {
bool has_multibyte_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i)
    if (static_cast<unsigned char>(s[i]) >= 0xC2 && utf8_seq_len(s, i) > 1) return true;
  return false;
}
} // namespace

bool looks_like_utf8(std::string_view s) {
  std::size_t good = 0, bad = 0;
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = utf8_seq_len(s, i);
    if (n) {
      ++good;
      i += n;
    } else {
      ++bad;
      ++i;
    }
  }
  return good > 0 && good >= bad * 2;
}

} // namespace detail

namespace {

using namespace detail;
void sanitize_utf8(std::string_view in, std::string& out, bool& lossy);

// Replaces invalid sequences with U+FFFD.
void sanitize_utf8(std::string_view in, std::string& out, bool& lossy) {
  std::size_t i = 0, run = 0;
  while (i < in.size()) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = utf8_seq_len(in, i);
    if (n) {
      i += n;
      continue;
    }
    out.append(in.substr(run, i - run));
    append_utf8(out, 0xFFFD);
    lossy = true;
    ++i;
    run = i;
  }
  out.append(in.substr(run));
}

constexpr char32_t cp1252_high[32] = {
    0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD, 0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178};

void latin1_to_utf8(std::string_view in, std::string& out, bool windows) {
  out.reserve(out.size() + in.size() + in.size() / 4);
  for (char ch : in) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) out.push_back(ch);
    else if (windows && c < 0xA0) append_utf8(out, cp1252_high[c - 0x80]);
    else append_utf8(out, c);
  }
}

// Maps a declared charset to the iconv name; empty when unknown.
std::string iconv_name(std::string_view cs) {
  std::string n = lower(trim(cs));
  if (auto star = n.find('*'); star != std::string::npos) n.resize(star); // RFC 2231 language
  while (!n.empty() && (n.back() == '"' || n.back() == '\'')) n.pop_back();
  while (!n.empty() && (n.front() == '"' || n.front() == '\'')) n.erase(0, 1);
  // Supersets first: mail labelled with the narrow name routinely uses the wider set.
  if (n == "gb2312" || n == "gbk" || n == "gb18030" || n == "x-gbk" || n == "cp936" ||
      n == "euc-cn" || n == "x-euc-cn" || n == "chinese")
    return "GB18030";
  if (n == "shift_jis" || n == "shift-jis" || n == "sjis" || n == "x-sjis" || n == "cp932" ||
      n == "windows-31j" || n == "ms_kanji" || n == "x-ms-cp932")
    return "CP932";
  if (n == "euc-kr" || n == "ks_c_5601-1987" || n == "ks_c_5601" || n == "ksc5601" ||
      n == "cp949" || n == "uhc" || n == "x-windows-949" || n == "korean" ||
      n == "ks_c_5601-1989")
    return "CP949";
  if (n == "big5" || n == "big-5" || n == "x-big5" || n == "cn-big5" || n == "big5-hkscs" ||
      n == "cp950")
    return "BIG5HKSCS";
  if (n == "iso-2022-jp" || n == "csiso2022jp" || n == "iso-2022-jp-2" || n == "jis")
    return "ISO-2022-JP-2";
  if (n == "iso-2022-jp-3") return "ISO-2022-JP-3";
  if (n == "euc-jp" || n == "x-euc-jp" || n == "eucjp") return "EUC-JP-MS";
  if (n == "koi8-r" || n == "koi8r") return "KOI8-R";
  if (n == "koi8-u") return "KOI8-U";
  if (n == "iso-2022-kr") return "ISO-2022-KR";
  if (n == "tis-620" || n == "windows-874" || n == "cp874") return "CP874";
  if (n == "utf-16" || n == "utf16") return "UTF-16";
  if (n == "utf-16le" || n == "utf-16be" || n == "utf-32" || n == "utf-32le" ||
      n == "utf-32be" || n == "utf-7")
    return n;
  auto digits = [](std::string_view s) {
    if (s.empty() || s.size() > 2) return false;
    for (char c : s)
      if (c < '0' || c > '9') return false;
    return true;
  };
  for (std::string_view p : {"iso-8859-", "iso8859-", "iso_8859-", "iso8859_", "iso-8859_"}) {
    if (n.rfind(p, 0) == 0) {
      std::string_view num = std::string_view(n).substr(p.size());
      if (auto colon = num.find(':'); colon != std::string_view::npos) num = num.substr(0, colon);
      if (digits(num)) return "ISO-8859-" + std::string(num);
    }
  }
  for (std::string_view p : {"windows-", "cp-", "cp", "win-", "x-cp"}) {
    if (n.rfind(p, 0) == 0) {
      std::string_view num = std::string_view(n).substr(p.size());
      if (num.size() == 4 && num[0] == '1' && num[1] == '2' && num[2] == '5' && num[3] >= '0' &&
          num[3] <= '8')
        return "CP" + std::string(num);
      if (num == "866" || num == "850" || num == "437" || num == "852") return "CP" + std::string(num);
    }
  }
  if (n == "latin2" || n == "l2") return "ISO-8859-2";
  if (n == "latin-9" || n == "latin9" || n == "l9") return "ISO-8859-15";
  if (n == "macintosh" || n == "mac" || n == "x-mac-roman") return "MACINTOSH";
  return {};
}

struct iconv_cache {
  std::unordered_map<std::string, iconv_t> map;
  ~iconv_cache() {
    for (auto& [k, cd] : map)
      if (cd != iconv_t(-1)) iconv_close(cd);
  }
  iconv_t get(const std::string& name) {
    auto it = map.find(name);
    if (it != map.end()) return it->second;
    if (map.size() > 64) return iconv_t(-1); // bounded: charsets come from hostile input
    iconv_t cd = iconv_open("UTF-8", name.c_str());
    map.emplace(name, cd);
    return cd;
  }
};

bool iconv_convert(iconv_t cd, std::string_view in, std::string& out, bool& lossy) {
  iconv(cd, nullptr, nullptr, nullptr, nullptr); // reset shift state
  char* src = const_cast<char*>(in.data());
  std::size_t src_left = in.size();
  std::size_t used = out.size();
  out.resize(used + in.size() * 2 + 16);
  auto room = [&](std::size_t n) {
    if (out.size() - used < n) out.resize(out.size() * 2 + n); // doubling: amortised linear
  };
  while (src_left > 0) {
    // Bounded chunks: sanitizer interceptors check the whole input range on every call,
    // which would make each of many invalid bytes cost O(remaining input).
    const std::size_t chunk = std::min<std::size_t>(src_left, 4096);
    std::size_t chunk_left = chunk;
    char* dst = out.data() + used;
    std::size_t dst_left = out.size() - used;
    std::size_t r = iconv(cd, &src, &chunk_left, &dst, &dst_left);
    src_left -= chunk - chunk_left;
    used = out.size() - dst_left;
    if (r != std::size_t(-1)) continue;
    if (errno == E2BIG) {
      room(out.size());
    } else if (errno == EINVAL && src_left > chunk_left) {
      continue; // a sequence cut by the chunk end: the next chunk starts with it
    } else if (errno == EILSEQ || errno == EINVAL) {
      // Invalid or truncated sequence: one replacement character, skip a byte, go on.
      room(3);
      std::memcpy(out.data() + used, "\xEF\xBF\xBD", 3);
      used += 3;
      lossy = true;
      ++src;
      --src_left;
      iconv(cd, nullptr, nullptr, nullptr, nullptr);
    } else {
      out.resize(used);
      return false;
    }
  }
  // flush shift state (ISO-2022-*)
  room(16);
  char* dst = out.data() + used;
  std::size_t dst_left = out.size() - used;
  iconv(cd, nullptr, nullptr, &dst, &dst_left);
  used = out.size() - dst_left;
  out.resize(used);
  return true;
}

} // namespace

namespace detail {
std::string utf8_lossy(std::string_view s) {
  std::string out;
  bool lossy = false;
  sanitize_utf8(s, out, lossy);
  return out;
}
} // namespace detail

std::string to_utf8(std::string_view bytes, std::string_view charset, bool* lossy_out) {
  std::string out;
  bool lossy = false;
  std::string_view cs = trim(charset);
  while (!cs.empty() && (cs.front() == '"' || cs.front() == '\'')) cs.remove_prefix(1);
  while (!cs.empty() && (cs.back() == '"' || cs.back() == '\'')) cs.remove_suffix(1);
  auto finish = [&]() {
    if (lossy_out) *lossy_out = lossy;
    return out;
  };
  if (iequals(cs, "utf-8") || iequals(cs, "utf8") || iequals(cs, "us-ascii") ||
      iequals(cs, "ascii") || cs.empty() || iequals(cs, "unicode-1-1-utf-8")) {
    if (is_valid_utf8(bytes)) {
      out.assign(bytes);
      return finish();
    }
    // US-ASCII / undeclared with 8-bit bytes: windows-1252 is what such senders meant.
    if (!iequals(cs, "utf-8") && !iequals(cs, "utf8")) {
      latin1_to_utf8(bytes, out, true);
      lossy = true;
      return finish();
    }
    // Labelled UTF-8 without a single valid multi-byte sequence: a legacy 8-bit text.
    if (!has_multibyte_utf8(bytes)) {
      latin1_to_utf8(bytes, out, true);
      lossy = true;
      return finish();
    }
    sanitize_utf8(bytes, out, lossy);
    return finish();
  }
  if (iequals(cs, "iso-8859-1") || iequals(cs, "latin1") || iequals(cs, "latin-1") ||
      iequals(cs, "l1") || iequals(cs, "windows-1252") || iequals(cs, "cp1252") ||
      iequals(cs, "iso_8859-1") || iequals(cs, "iso8859-1")) {
    // ISO-8859-1 labels are routinely windows-1252 in practice (HTML5 does the same).
    latin1_to_utf8(bytes, out, true);
    return finish();
  }
  std::string name = iconv_name(cs);
  if (!name.empty()) {
    thread_local iconv_cache cache;
    iconv_t cd = cache.get(name);
    if (cd != iconv_t(-1) && iconv_convert(cd, bytes, out, lossy)) return finish();
    out.clear();
  }
  // Unknown charset: keep what is valid UTF-8, read the rest as windows-1252. Lossy.
  lossy = true;
  if (is_valid_utf8(bytes)) out.assign(bytes);
  else latin1_to_utf8(bytes, out, true);
  return finish();
}

} // namespace mscan::mime
