// Header value semantics that need no MIME tree: dates, subjects; and body text helpers:
// HTML to readable text and the reply-above cut.
#include "protocols/mime/detail.hpp"
#include "protocols/mime/message.hpp"

#include <array>
#include <cstring>

namespace mscan::mime {
using namespace detail;

namespace {

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// Unix seconds of a civil date and time at `zone` minutes east of UTC, or nothing when a
// field is out of range (both date parsers end here).
std::optional<std::int64_t> epoch_of(int year, int month, int day, int h, int mi, int se, int zone) {
  static constexpr int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (year < 1900 || year > 9999 || month < 1 || month > 12 || day < 1 || day > mdays[month - 1] ||
      h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 60)
    return std::nullopt;
  return days_from_civil(year, unsigned(month), unsigned(day)) * 86400 + h * 3600 + mi * 60 + se -
         std::int64_t(zone) * 60;
}

int month_of(std::string_view w) {
  static constexpr std::array<std::string_view, 12> names = {
      "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
  if (w.size() < 3) return 0;
  for (int i = 0; i < 12; ++i)
    if (iequals(w.substr(0, 3), names[std::size_t(i)])) return i + 1;
  return 0;
}

// Zone names of RFC 5322 obs-zone plus a few common ones; minutes east of UTC.
bool zone_of(std::string_view w, int& minutes) {
  struct z { std::string_view n; int m; };
  static constexpr z zones[] = {{"ut", 0},      {"utc", 0},     {"gmt", 0},     {"z", 0},
                                {"est", -300},  {"edt", -240},  {"cst", -360},  {"cdt", -300},
                                {"mst", -420},  {"mdt", -360},  {"pst", -480},  {"pdt", -420},
                                {"cet", 60},    {"cest", 120},  {"met", 60},    {"mest", 120},
                                {"bst", 60},    {"ist", 330},   {"jst", 540},   {"kst", 540},
                                {"eet", 120},   {"eest", 180},  {"wet", 0},     {"west", 60},
                                {"hkt", 480},   {"sgt", 480},   {"aest", 600},  {"aedt", 660}};
  for (const auto& zz : zones)
    if (iequals(w, zz.n)) {
      minutes = zz.m;
      return true;
    }
  return false;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

int to_int(std::string_view s) {
  int v = 0;
  for (char c : s) {
    if (v > 100000) break;
    v = v * 10 + (c - '0');
  }
  return v;
}

bool parse_time(std::string_view w, int& h, int& mi, int& se) {
  std::size_t c1 = w.find(':');
  if (c1 == std::string_view::npos) return false;
  std::size_t c2 = w.find(':', c1 + 1);
  std::string_view hs = w.substr(0, c1);
  std::string_view ms = w.substr(c1 + 1, c2 == std::string_view::npos ? std::string_view::npos : c2 - c1 - 1);
  std::string_view ss = c2 == std::string_view::npos ? std::string_view{} : w.substr(c2 + 1);
  if (auto dot = ss.find('.'); dot != std::string_view::npos) ss = ss.substr(0, dot); // fractions
  if (!all_digits(hs) || !all_digits(ms) || hs.size() > 2 || ms.size() > 2) return false;
  if (!ss.empty() && (!all_digits(ss) || ss.size() > 2)) return false;
  h = to_int(hs);
  mi = to_int(ms);
  se = ss.empty() ? 0 : to_int(ss);
  return true;
}

} // namespace

namespace detail {

// The form nearly every mailer writes, "[Dow, ]D Mon YYYY HH:MM[:SS] +ZZZZ", read without
// the general parser's copy and word split (it was ~2% of the engine's CPU per message).
// Anything else, trailing comments included, is nullopt here and goes to the general parser,
// whose result this must equal wherever it answers (tests/unit/mime: both on many dates).
std::optional<std::int64_t> parse_canonical_date(std::string_view v) {
  std::size_t i = 0;
  auto spaces = [&] {
    const std::size_t from = i;
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n')) ++i;
    return i > from;
  };
  auto digits = [&](std::size_t min, std::size_t max, int& out) {
    std::size_t n = 0;
    out = 0;
    while (i < v.size() && n < max && v[i] >= '0' && v[i] <= '9') out = out * 10 + (v[i++] - '0'), ++n;
    return n >= min && !(i < v.size() && v[i] >= '0' && v[i] <= '9');
  };
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  spaces();
  if (i + 4 <= v.size() && letter(v[i])) {  // day of week: ignored, as the general parser does
    // (a month name there would be taken as the month by the general parser)
    if (!letter(v[i + 1]) || !letter(v[i + 2]) || v[i + 3] != ',' || month_of(v.substr(i, 3)))
      return std::nullopt;
    i += 4;
    spaces();
  }
  int day = 0, year = 0, h = 0, mi = 0, se = 0;
  if (!digits(1, 2, day) || !spaces()) return std::nullopt;
  if (i + 3 > v.size() || (i + 3 < v.size() && letter(v[i + 3]))) return std::nullopt;
  const int month = month_of(v.substr(i, 3));
  i += 3;
  if (!month || !spaces() || !digits(4, 4, year) || !spaces()) return std::nullopt;
  if (!digits(1, 2, h) || i >= v.size() || v[i++] != ':' || !digits(2, 2, mi)) return std::nullopt;
  if (i < v.size() && v[i] == ':' && (++i, !digits(2, 2, se))) return std::nullopt;
  if (!spaces() || i >= v.size() || (v[i] != '+' && v[i] != '-')) return std::nullopt;
  const int sign = v[i++] == '-' ? -1 : 1;
  int zone = 0;
  if (!digits(4, 4, zone)) return std::nullopt;
  const int zh = zone / 100, zm = zone % 100;
  spaces();
  if (i != v.size()) return std::nullopt;
  return epoch_of(year, month, day, h, mi, se, sign * (zh * 60 + zm));
}

} // namespace detail

std::optional<std::int64_t> parse_date(std::string_view value) {
  if (auto fast = detail::parse_canonical_date(value)) return fast;
  return detail::parse_date_general(value);
}

namespace detail {

std::optional<std::int64_t> parse_date_general(std::string_view value) {
  // Words without comments; separators are whitespace and ','.
  std::array<std::string_view, 16> words{};
  std::size_t nw = 0;
  std::string clean;
  clean.reserve(value.size());
  int depth = 0;
  for (char c : value) {
    if (c == '(') ++depth;
    else if (c == ')' && depth > 0) --depth;
    else if (depth == 0) clean.push_back(c == ',' || is_space(c) ? ' ' : c);
    if (clean.size() > 256) break;
  }
  std::string_view cs = clean;
  std::size_t i = 0;
  while (i < cs.size() && nw < words.size()) {
    while (i < cs.size() && cs[i] == ' ') ++i;
    std::size_t j = i;
    while (j < cs.size() && cs[j] != ' ') ++j;
    if (j > i) words[nw++] = cs.substr(i, j - i);
    i = j;
  }
  int year = -1, month = 0, day = -1, h = -1, mi = 0, se = 0, zone = 0;
  bool have_zone = false;
  int pm = -1; // -1: 24-hour clock, 0: AM, 1: PM
  for (std::size_t k = 0; k < nw; ++k) {
    std::string_view w = words[k];
    // ISO 8601: 2024-04-11T08:00:00Z / 2024-04-11 08:00:00
    if (w.size() >= 10 && w[4] == '-' && w[7] == '-' && all_digits(w.substr(0, 4))) {
      year = to_int(w.substr(0, 4));
      month = all_digits(w.substr(5, 2)) ? to_int(w.substr(5, 2)) : 0;
      day = all_digits(w.substr(8, 2)) ? to_int(w.substr(8, 2)) : -1;
      w = w.substr(10);
      if (!w.empty() && (w[0] == 'T' || w[0] == 't')) w.remove_prefix(1);
      if (w.empty()) continue;
      // time followed by zone glued on: "08:00:00Z", "08:00:00+02:00"
      std::size_t zpos = w.find_first_of("Zz+-");
      std::string_view tz = zpos == std::string_view::npos ? std::string_view{} : w.substr(zpos);
      if (parse_time(w.substr(0, zpos), h, mi, se) && !tz.empty()) {
        if (tz == "Z" || tz == "z") have_zone = true;
        else words[k] = tz, --k; // reparse the zone part as its own word
      }
      continue;
    }
    if ((w[0] == '+' || w[0] == '-') && w.size() >= 3) {
      std::string digits;
      for (char c : w.substr(1))
        if (c != ':') digits.push_back(c);
      if (all_digits(digits) && (digits.size() == 4 || digits.size() == 2)) {
        int hh = to_int(std::string_view(digits).substr(0, 2));
        int mm = digits.size() == 4 ? to_int(std::string_view(digits).substr(2, 2)) : 0;
        zone = (hh * 60 + mm) * (w[0] == '-' ? -1 : 1);
        have_zone = true;
        continue;
      }
    }
    if (w.find(':') != std::string_view::npos) {
      if (h < 0) parse_time(w, h, mi, se);
      continue;
    }
    if (all_digits(w)) {
      int v = to_int(w);
      if (w.size() <= 2 && day < 0 && v >= 1) day = v;
      else if (year < 0) year = w.size() == 2 ? (v < 50 ? 2000 + v : 1900 + v) : w.size() == 3 ? 1900 + v : v;
      continue;
    }
    if (int m = month_of(w); m && month == 0 && w.size() <= 9) {
      month = m;
      continue;
    }
    if (iequals(w, "pm")) {
      pm = 1;
      continue;
    }
    if (iequals(w, "am")) {
      pm = 0;
      continue;
    }
    int zm = 0;
    if (!have_zone && zone_of(w, zm)) {
      zone = zm;
      have_zone = true;
    }
  }
  if (h < 0) h = 0;
  if (pm >= 0 && h >= 1 && h <= 12) h = (h % 12) + (pm ? 12 : 0);
  return epoch_of(year, month, day, h, mi, se, zone);
}

} // namespace detail

namespace {

// Reply/forward prefixes in the languages our users' correspondents write.
constexpr std::string_view subject_prefixes[] = {
    "re", "fwd", "fw", "aw", "wg", "sv", "vs", "r", "tr", "rv", "antw", "antwort", "odp",
    "pd", "enc", "res", "ynt", "i", "rif", "vl", "vb", "fs", "doorst", "ref", "réf", "rép",
    "svar", "vid", "atb", "ats", "reenv", "reenvío", "fwd", "fw", "ilt", "továbbítás", "továbbítás",
    "\xE5\x9B\x9E\xE5\xA4\x8D", // 回复
    "\xE5\x9B\x9E\xE8\xA6\x86", // 回覆
    "\xE7\xAD\x94\xE5\xA4\x8D", // 答复
    "\xE8\xBD\xAC\xE5\x8F\x91", // 转发
    "\xE8\xBD\x89\xE5\xAF\x84", // 轉寄
    "\xE8\xBD\x89\xE7\x99\xBC", // 轉發
    "\xE8\xBF\x94\xE4\xBF\xA1", // 返信
    "\xE8\xBB\xA2\xE9\x80\x81", // 転送
    "\xCE\xA0\xCE\xA1\xCE\x98", // ΠΡΘ (Greek reply), also "ΑΠ", "ΣΧΕΤ"
    "\xCE\x91\xCE\xA0", "\xCE\xA3\xCE\xA7\xCE\x95\xCE\xA4",
    "\xD0\x9E\xD1\x82\xD0\xB2\xD0\xB5\xD1\x82", // Ответ
};

// Length of a reply/forward prefix at the start of s ("Re:", "RE[2]:", "Fwd :", "回复："), or 0.
// Lower-cased first bytes of subject_prefixes: most subjects start with none of them.
constexpr auto prefix_first_bytes = [] {
  std::array<bool, 256> t{};
  for (std::string_view p : subject_prefixes) {
    unsigned char c = static_cast<unsigned char>(p.front());
    t[(c >= 'A' && c <= 'Z') ? c + 32 : c] = true;
  }
  return t;
}();

std::size_t prefix_len(std::string_view s) {
  // Cheap rejections before ~40 case-insensitive compares: every prefix is followed by ':'
  // (ASCII or the fullwidth U+FF1A, whose UTF-8 starts with 0xEF).
  if (s.empty() || !prefix_first_bytes[static_cast<unsigned char>(ascii_lower(s.front()))] ||
      s.find_first_of(":\xEF") == std::string_view::npos)
    return 0;
  for (std::string_view p : subject_prefixes) {
    if (s.size() < p.size() || !iequals(s.substr(0, p.size()), p)) continue;
    std::size_t i = p.size();
    if (i < s.size() && (s[i] == '[' || s[i] == '(')) { // counter: Re[2]: Re(3):
      char close = s[i] == '[' ? ']' : ')';
      std::size_t j = i + 1;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      if (j > i + 1 && j < s.size() && s[j] == close) i = j + 1;
    } else if (i < s.size() && s[i] == '^') {
      std::size_t j = i + 1;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      i = j;
    }
    while (i < s.size() && s[i] == ' ') ++i;
    if (i < s.size() && s[i] == ':') return i + 1;
    if (s.substr(i, 3) == "\xEF\xBC\x9A") return i + 3; // fullwidth colon
  }
  return 0;
}

} // namespace

std::string normalize_subject(std::string_view subject) {
  std::string_view s = trim(subject);
  for (int guard = 0; guard < 100; ++guard) {
    s = trim(s);
    if (std::size_t n = prefix_len(s)) {
      s.remove_prefix(n);
      continue;
    }
    // "[Fwd: original]" (Netscape) and a trailing "(fwd)" (Pine)
    if (s.size() > 6 && s.front() == '[' && s.back() == ']' && prefix_len(s.substr(1))) {
      s = s.substr(1, s.size() - 2);
      continue;
    }
    if (s.size() > 5 && iequals(s.substr(s.size() - 5), "(fwd)")) {
      s.remove_suffix(5);
      continue;
    }
    break;
  }
  // Collapse runs of whitespace so folding differences do not split threads.
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (is_space(c)) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

namespace {

struct entity { std::string_view name; char32_t cp; };
constexpr entity entities[] = {
    {"amp", '&'},     {"lt", '<'},       {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
    {"nbsp", 0xA0},   {"copy", 0xA9},    {"reg", 0xAE},     {"trade", 0x2122}, {"euro", 0x20AC},
    {"pound", 0xA3},  {"yen", 0xA5},     {"cent", 0xA2},    {"sect", 0xA7},    {"deg", 0xB0},
    {"laquo", 0xAB},  {"raquo", 0xBB},   {"ndash", 0x2013}, {"mdash", 0x2014}, {"lsquo", 0x2018},
    {"rsquo", 0x2019}, {"ldquo", 0x201C}, {"rdquo", 0x201D}, {"hellip", 0x2026}, {"bull", 0x2022},
    {"middot", 0xB7}, {"times", 0xD7},   {"auml", 0xE4},    {"ouml", 0xF6},    {"uuml", 0xFC},
    {"Auml", 0xC4},   {"Ouml", 0xD6},    {"Uuml", 0xDC},    {"szlig", 0xDF},   {"eacute", 0xE9},
    {"egrave", 0xE8}, {"ecirc", 0xEA},   {"aacute", 0xE1},  {"agrave", 0xE0},  {"acirc", 0xE2},
    {"ccedil", 0xE7}, {"oacute", 0xF3},  {"iacute", 0xED},  {"uacute", 0xFA},  {"ntilde", 0xF1},
    {"Eacute", 0xC9}, {"zwnj", 0x200C},  {"shy", 0xAD},     {"ensp", 0x2002},  {"emsp", 0x2003},
    {"thinsp", 0x2009}, {"bdquo", 0x201E}, {"sbquo", 0x201A}, {"iexcl", 0xA1},
    {"iquest", 0xBF}, {"aring", 0xE5},  {"oslash", 0xF8},  {"aelig", 0xE6},   {"atilde", 0xE3},
    {"otilde", 0xF5}, {"ocirc", 0xF4},  {"ucirc", 0xFB},   {"euml", 0xEB},    {"iuml", 0xEF}};

bool tag_is(std::string_view tag, std::string_view name) {
  return tag.size() == name.size() && iequals(tag, name);
}

// Tags that end a line of text (block elements).
bool block_tag(std::string_view t) {
  for (std::string_view b : {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                             "table", "ul", "ol", "blockquote", "hr", "pre", "title", "dt", "dd"})
    if (tag_is(t, b)) return true;
  return false;
}

} // namespace

std::string html_to_text(std::string_view html) {
  std::string out;
  out.reserve(html.size() / 2);
  bool space_pending = false;
  int newlines = 2; // pending newlines already at the start: suppress leading blank lines
  auto put_char_run = [&](std::string_view run) {
    for (char c : run) {
      if (is_space(c)) {
        space_pending = true;
        continue;
      }
      if (space_pending && newlines == 0 && !out.empty()) out.push_back(' ');
      space_pending = false;
      newlines = 0;
      out.push_back(c);
    }
  };
  auto newline = [&](int n) {
    if (out.empty()) return;
    while (newlines < n) {
      out.push_back('\n');
      ++newlines;
    }
    space_pending = false;
  };
  bool head_unclosed = false, title_unclosed = false;
  std::size_t next_lt = 0;
  bool first = true;
  std::size_t i = 0;
  while (i < html.size()) {
    // The next '<' is cached: text full of '&' must not rescan to the end for each one.
    if (first || next_lt < i) {
      first = false;
      const void* p = std::memchr(html.data() + i, '<', html.size() - i);
      next_lt = p ? std::size_t(static_cast<const char*>(p) - html.data()) : html.size();
    }
    const void* amp = std::memchr(html.data() + i, '&', next_lt - i);
    std::size_t stop = amp ? std::size_t(static_cast<const char*>(amp) - html.data()) : next_lt;
    put_char_run(html.substr(i, stop - i));
    i = stop;
    if (i >= html.size()) break;
    if (html[i] == '&') {
      std::size_t semi = html.substr(0, std::min(html.size(), i + 12)).find(';', i); // bounded: linear
      std::string_view ent = semi == std::string_view::npos || semi - i > 10 ? std::string_view{} : html.substr(i + 1, semi - i - 1);
      char32_t cp = 0;
      if (ent.size() > 1 && ent[0] == '#') {
        bool hex = ent[1] == 'x' || ent[1] == 'X';
        std::string_view num = ent.substr(hex ? 2 : 1);
        std::uint32_t v = 0;
        bool ok = !num.empty();
        for (char c : num) {
          int d = (c >= '0' && c <= '9') ? c - '0' : hex && (c | 32) >= 'a' && (c | 32) <= 'f' ? (c | 32) - 'a' + 10 : -1;
          if (d < 0 || v > 0x10FFFF) { ok = false; break; }
          v = v * (hex ? 16 : 10) + std::uint32_t(d);
        }
        if (ok) cp = v ? v : 0xFFFD;
      } else {
        for (const auto& e : entities)
          if (e.name == ent) cp = e.cp;
      }
      if (cp) {
        std::string tmp;
        append_utf8(tmp, cp == 0xA0 ? char32_t(' ') : cp);
        put_char_run(tmp);
        i = semi + 1;
      } else {
        put_char_run("&");
        ++i;
      }
      continue;
    }
    // '<': comment, tag
    if (html.substr(i, 4) == "<!--") {
      std::size_t end = html.find("-->", i + 4);
      i = end == std::string_view::npos ? html.size() : end + 3;
      continue;
    }
    std::size_t gt = html.find('>', i + 1);
    if (gt == std::string_view::npos) break; // unterminated tag: drop the rest
    std::string_view tag = html.substr(i + 1, gt - i - 1);
    bool closing = !tag.empty() && tag[0] == '/';
    if (closing) tag.remove_prefix(1);
    std::size_t ne = 0;
    while (ne < tag.size() && !is_space(tag[ne]) && tag[ne] != '/' && tag[ne] != '>') ++ne;
    std::string_view name = tag.substr(0, ne);
    i = gt + 1;
    if (!closing && (tag_is(name, "script") || tag_is(name, "style") || tag_is(name, "head") ||
                     tag_is(name, "title"))) {
      // skip to the matching close tag (case-insensitive search without allocation)
      std::size_t k = i;
      bool found = false;
      // An unclosed <head>/<title> is only searched for once: repeats would be quadratic.
      bool& unclosed = tag_is(name, "head") ? head_unclosed : title_unclosed;
      bool searchable = !((tag_is(name, "head") || tag_is(name, "title")) && unclosed);
      while (searchable && (k = html.find("</", k)) != std::string_view::npos) {
        std::string_view rest = html.substr(k + 2);
        if (istarts_with(rest, name)) {
          std::size_t g = html.find('>', k);
          i = g == std::string_view::npos ? html.size() : g + 1;
          found = true;
          break;
        }
        k += 2;
      }
      if (!found && !tag_is(name, "head") && !tag_is(name, "title")) i = html.size();
      if (!found && (tag_is(name, "head") || tag_is(name, "title"))) unclosed = true;
      continue;
    }
    if (tag_is(name, "br")) newline(1);
    else if (tag_is(name, "p") || tag_is(name, "h1") || tag_is(name, "h2") ||
             tag_is(name, "h3") || tag_is(name, "blockquote") || tag_is(name, "table"))
      newline(2);
    else if (block_tag(name)) newline(1);
    else if (tag_is(name, "td") || tag_is(name, "th")) space_pending = true;
  }
  while (!out.empty() && is_space(out.back())) out.pop_back();
  return out;
}

namespace {

bool contains_ci(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i)
    if (iequals(hay.substr(i, needle.size()), needle)) return true;
  return false;
}

bool ends_with_wrote(std::string_view line) {
  line = trim(line);
  if (line.empty() || line.back() != ':') return false;
  for (std::string_view w : {"wrote:", "writes:", "schrieb:", "a écrit :", "a écrit:",
                             "escribió:", "ha scritto:", "schreef:", "skrev:", "kirjoitti:",
                             "napisał:", "escreveu:", "написал:", "napsal:"})
    if (line.size() >= w.size() && iequals(line.substr(line.size() - w.size()), w)) return true;
  return false;
}

// "-----Original Message-----" and its translations ("---------- Forwarded message ---").
bool separator_line(std::string_view t) {
  return contains_ci(t, "original message") || contains_ci(t, "ursprüngliche nachricht") ||
         contains_ci(t, "message d'origine") || contains_ci(t, "forwarded message") ||
         contains_ci(t, "mensaje original") || contains_ci(t, "messaggio originale") ||
         contains_ci(t, "oorspronkelijk bericht") || contains_ci(t, "originalmeddelande");
}

bool quote_verb(std::string_view line) {
  for (std::string_view v : {"wrote", "schrieb", "écrit", "escribió", "scritto", "schreef", "skrev",
                             "napisał", "escreveu", "написал", "kirjoitti"})
    if (contains_ci(line, v)) return true;
  return false;
}

bool starts_quote_intro(std::string_view line) {
  line = trim(line);
  for (std::string_view w : {"on ", "am ", "le ", "el ", "il ", "op ", "den ", "w dniu ",
                             "em ", "dne "})
    if (istarts_with(line, w)) return true;
  return false;
}

} // namespace

std::string extract_reply_above(std::string_view body, std::string_view marker) {
  std::size_t cut = std::string_view::npos;
  if (!marker.empty()) {
    if (auto m = body.find(marker); m != std::string_view::npos) {
      std::size_t ls = body.rfind('\n', m);
      cut = ls == std::string_view::npos ? 0 : ls + 1;
    }
  }
  if (cut == std::string_view::npos) {
    std::size_t pos = 0;
    std::string_view prev;
    std::size_t prev_start = 0;
    int lines = 0;
    while (pos < body.size() && lines < 100000) {
      std::size_t nl = body.find('\n', pos);
      std::size_t end = nl == std::string_view::npos ? body.size() : nl;
      std::string_view line = body.substr(pos, end - pos);
      std::string_view t = trim(line);
      bool hit = false;
      std::size_t at = pos;
      if (!t.empty() && t.front() != '>') {
        bool quoted_next = false;
        if (ends_with_wrote(t) && end < body.size()) {
          std::size_t q = end + 1;
          while (q < body.size() && is_space(body[q])) ++q;
          quoted_next = q < body.size() && body[q] == '>';
        }
        if (ends_with_wrote(t) && !starts_quote_intro(t) && starts_quote_intro(prev)) {
          hit = true; // "On ... Bob Smith" / "<bob@x> wrote:" wrapped over two lines
          at = prev_start;
        } else if (ends_with_wrote(t) && (starts_quote_intro(t) || t.size() > 20 || quoted_next)) {
          hit = true;
        } else if (t.back() == ':' && starts_quote_intro(t) && quote_verb(t)) {
          hit = true; // "Am 01.01.2024 um 10:00 schrieb Bob <bob@x>:"
        }
        else if (t.size() >= 10 && t.substr(0, 3) == "---" && separator_line(t.substr(0, 200)))
          hit = true;
        else if (istarts_with(t, "from:") || istarts_with(t, "von:") || istarts_with(t, "de:") ||
                 istarts_with(t, "*from:*")) {
          // Outlook header block: From: then Sent:/Date: within the next lines.
          std::size_t p2 = end;
          for (int k = 0; k < 4 && p2 < body.size(); ++k) {
            std::size_t n2 = body.find('\n', p2 + 1);
            std::string_view l2 = trim(body.substr(p2 + 1, (n2 == std::string_view::npos ? body.size() : n2) - p2 - 1));
            if (istarts_with(l2, "sent:") || istarts_with(l2, "date:") || istarts_with(l2, "gesendet:") ||
                istarts_with(l2, "envoyé :") || istarts_with(l2, "enviado:") || istarts_with(l2, "*sent:*")) {
              hit = true;
              break;
            }
            if (n2 == std::string_view::npos) break;
            p2 = n2;
          }
          // an underscore rule right above belongs to the block
          if (hit && !trim(prev).empty() && trim(prev).find_first_not_of('_') == std::string_view::npos)
            at = prev_start;
        }
      }
      if (hit) {
        cut = at;
        break;
      }
      if (!t.empty()) {
        prev = line;
        prev_start = pos;
      }
      ++lines;
      if (nl == std::string_view::npos) break;
      pos = nl + 1;
    }
  }
  std::string_view above = cut == std::string_view::npos ? body : body.substr(0, cut);
  // Drop trailing blank lines and a trailing quote block ("> ...") that belongs to the quote.
  return std::string(trim(above));
}

} // namespace mscan::mime
