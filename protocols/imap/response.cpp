#include "protocols/imap/response.hpp"

#include <array>
#include <cstring>
#include <utility>

namespace mscan::imap {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Days since 1970-01-01 of a proleptic Gregorian date (the usual era-based formula).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2 ? 1 : 0;
}

constexpr std::array<std::string_view, 12> month_names{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool digits(std::string_view s, std::size_t pos, std::size_t n, unsigned& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + static_cast<unsigned>(s[i] - '0');
  }
  return true;
}

} // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool list_data::has_flag(std::string_view flag) const {
  for (const auto& f : flags)
    if (iequals(f, flag)) return true;
  return false;
}

const body_section* fetch_data::find_section(std::string_view section) const {
  for (const auto& s : sections)
    if (!s.binary && iequals(s.section, section)) return &s;
  return nullptr;
}

body_section* fetch_data::find_section(std::string_view section) {
  return const_cast<body_section*>(std::as_const(*this).find_section(section));
}

namespace {

std::optional<std::string> nstring(const sexp& v) {
  if (v.type == sexp::kind::string || v.type == sexp::kind::atom) return v.text;
  return std::nullopt;
}

bool address_list(const sexp& v, std::vector<envelope_address>& out) {
  if (v.type == sexp::kind::nil) return true;
  if (v.type != sexp::kind::list) return false;
  for (const auto& a : v.items) {
    if (a.type != sexp::kind::list || a.items.size() != 4) return false;
    out.push_back({nstring(a.items[0]), nstring(a.items[1]), nstring(a.items[2]), nstring(a.items[3])});
  }
  return true;
}

} // namespace

std::optional<envelope> to_envelope(const sexp& t) {
  if (t.type != sexp::kind::list || t.items.size() != 10) return std::nullopt;
  envelope e;
  e.date = nstring(t.items[0]);
  e.subject = nstring(t.items[1]);
  if (!address_list(t.items[2], e.from) || !address_list(t.items[3], e.sender) ||
      !address_list(t.items[4], e.reply_to) || !address_list(t.items[5], e.to) ||
      !address_list(t.items[6], e.cc) || !address_list(t.items[7], e.bcc))
    return std::nullopt;
  e.in_reply_to = nstring(t.items[8]);
  e.message_id = nstring(t.items[9]);
  return e;
}

std::optional<std::int64_t> parse_internaldate(std::string_view s) {
  // date-day-fixed "-" date-month "-" date-year SP time SP zone; day may be " 7" or "7".
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  std::size_t p = 0;
  unsigned day = 0, year = 0, hh = 0, mm = 0, ss = 0, zone = 0;
  if (digits(s, 0, 2, day)) p = 2;
  else if (digits(s, 0, 1, day)) p = 1;
  else return std::nullopt;
  if (p >= s.size() || s[p] != '-') return std::nullopt;
  ++p;
  if (p + 4 > s.size()) return std::nullopt;
  unsigned month = 0;
  for (unsigned i = 0; i < 12; ++i)
    if (iequals(s.substr(p, 3), month_names[i])) month = i + 1;
  if (month == 0 || s[p + 3] != '-') return std::nullopt;
  p += 4;
  if (!digits(s, p, 4, year)) return std::nullopt;
  p += 4;
  if (p >= s.size() || s[p] != ' ') return std::nullopt;
  ++p;
  if (!digits(s, p, 2, hh) || s.size() < p + 8 || s[p + 2] != ':' || !digits(s, p + 3, 2, mm) ||
      s[p + 5] != ':' || !digits(s, p + 6, 2, ss))
    return std::nullopt;
  p += 8;
  if (p >= s.size() || s[p] != ' ') return std::nullopt;
  ++p;
  if (p + 5 > s.size() || (s[p] != '+' && s[p] != '-') || !digits(s, p + 1, 4, zone))
    return std::nullopt;
  if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  const std::int64_t offset = static_cast<std::int64_t>(zone / 100) * 3600 + (zone % 100) * 60;
  std::int64_t t = days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss;
  return s[p] == '+' ? t - offset : t + offset;
}

std::int64_t utc_day_start(std::int64_t unix_seconds) {
  std::int64_t days = unix_seconds / 86400;
  if (unix_seconds < 0 && unix_seconds % 86400 != 0) --days;
  return days * 86400;
}

std::string format_search_date(std::int64_t unix_seconds) {
  const std::int64_t days = utc_day_start(unix_seconds) / 86400;
  std::int64_t y = 0;
  unsigned m = 0, d = 0;
  civil_from_days(days, y, m, d);
  std::string out = std::to_string(d);
  out += '-';
  out += month_names[m - 1];
  out += '-';
  out += std::to_string(y);
  return out;
}

} // namespace mscan::imap
