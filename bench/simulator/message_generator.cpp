#include "bench/simulator/message_generator.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>
#include <fmt/format.h>

namespace mscan::sim {

namespace {

constexpr std::array<std::string_view, 12> month_names{
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> weekday_names{"Thu", "Fri", "Sat", "Sun",
                                                        "Mon", "Tue", "Wed"};  // 1970-01-01 = Thu

constexpr std::array<std::string_view, 20> subjects{
    "Quarterly business review follow-up",
    "Pricing for the additional licences",
    "Question about the last invoice",
    "Meeting next Tuesday",
    "Cannot log in to the portal",
    "Contract draft for review",
    "Delivery schedule update",
    "Renewal reminder",
    "Feedback on yesterday's demo",
    "Integration timeline",
    "Budget approval for phase two",
    "Server outage this morning",
    "Training session dates",
    "Order confirmation",
    "Partnership proposal",
    "Updated shipping address",
    "Security questionnaire",
    "Onboarding checklist",
    "Price increase notice",
    "Request for a call back"};
constexpr std::array<std::string_view, 4> subject_prefixes{"", "Re: ", "RE: ", "Fwd: "};

constexpr std::array<std::string_view, 32> words{
    "the",      "order",   "customer", "please",  "invoice", "we",       "will",    "review",
    "contract", "team",    "delivery", "support", "next",    "week",     "update",  "project",
    "account",  "meeting", "thanks",   "for",     "your",    "request",  "pricing", "schedule",
    "license",  "and",     "to",       "attached", "regards", "question", "budget", "timeline"};

struct civil {
  int y;
  unsigned m, d;
};

// Howard Hinnant's days_from_civil / civil_from_days (public-domain algorithms).
std::int64_t days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return static_cast<std::int64_t>(era) * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

civil civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int>(y + (m <= 2)), m, d};
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

struct split_time {
  civil c;
  int hh, mm, ss;
  std::int64_t days;
};

split_time split(std::int64_t t) {
  const std::int64_t days = floor_div(t, 86400);
  const std::int64_t rem = t - days * 86400;
  return {civil_from_days(days), static_cast<int>(rem / 3600), static_cast<int>(rem % 3600 / 60),
          static_cast<int>(rem % 60), days};
}

void base64_append(std::string& out, std::string_view in) {
  static constexpr char tbl[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::size_t line = 0;
  for (std::size_t i = 0; i < in.size(); i += 3) {
    const std::uint32_t b0 = static_cast<unsigned char>(in[i]);
    const std::uint32_t b1 = i + 1 < in.size() ? static_cast<unsigned char>(in[i + 1]) : 0;
    const std::uint32_t b2 = i + 2 < in.size() ? static_cast<unsigned char>(in[i + 2]) : 0;
    const std::uint32_t v = (b0 << 16) | (b1 << 8) | b2;
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < in.size() ? tbl[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? tbl[v & 63] : '=';
    line += 4;
    if (line >= 76) {
      out += "\r\n";
      line = 0;
    }
  }
  if (line != 0) out += "\r\n";
}

// Filler text: 512 fixed lines of words (built once); a message copies whole lines starting
// at a line chosen by its hash until it reaches its size. Copying lines instead of choosing
// every word keeps generation at a few microseconds per message.
struct filler_block {
  std::string text;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> lines;  // offset, length (with CRLF)
};

const filler_block& filler() {
  static const filler_block block = [] {
    filler_block b;
    for (std::uint64_t i = 0; i < 512; ++i) {
      const auto start = static_cast<std::uint32_t>(b.text.size());
      std::size_t len = 0;
      for (std::uint64_t k = 0; len < 60; ++k) {
        const auto w = words[mix(i, k, 0xf111e4) % words.size()];
        if (len != 0) {
          b.text += ' ';
          ++len;
        }
        b.text += w;
        len += w.size();
      }
      b.text += ".\r\n";
      b.lines.emplace_back(start, static_cast<std::uint32_t>(b.text.size() - start));
    }
    return b;
  }();
  return block;
}

// Returns the number of lines appended.
std::size_t append_filler(std::string& out, std::uint64_t h, std::size_t target) {
  const auto& f = filler();
  std::size_t i = h % f.lines.size();
  std::size_t n = 0;
  do {
    ++n;
    const auto [off, len] = f.lines[i];
    out.append(f.text, off, len);
    i = (i + 1) % f.lines.size();
  } while (out.size() < target);
  return n;
}

}  // namespace

std::uint64_t mix(std::uint64_t a, std::uint64_t b, std::uint64_t c, std::uint64_t d) {
  std::uint64_t x = a;
  for (std::uint64_t v : {b, c, d}) {
    x += 0x9e3779b97f4a7c15ULL + v * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
  }
  return x;
}

double unit_interval(std::uint64_t h) {
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

std::int64_t midnight_utc(std::int64_t t) { return floor_div(t, 86400) * 86400; }

std::string rfc5322_date(std::int64_t t) {
  const auto s = split(t);
  const auto wd = weekday_names[static_cast<std::size_t>(((s.days % 7) + 7) % 7)];
  return fmt::format("{}, {:02d} {} {:04d} {:02d}:{:02d}:{:02d} +0000", wd, s.c.d,
                     month_names[s.c.m - 1], s.c.y, s.hh, s.mm, s.ss);
}

std::string internal_date(std::int64_t t) {
  const auto s = split(t);
  return fmt::format("{:02d}-{}-{:04d} {:02d}:{:02d}:{:02d} +0000", s.c.d, month_names[s.c.m - 1],
                     s.c.y, s.hh, s.mm, s.ss);
}

std::int64_t parse_imap_date(std::string_view s) {
  // date-day "-" date-month "-" date-year
  const auto d1 = s.find('-');
  if (d1 == std::string_view::npos || d1 == 0 || d1 > 2) return -1;
  const auto d2 = s.find('-', d1 + 1);
  if (d2 == std::string_view::npos || d2 != d1 + 4 || s.size() != d2 + 5) return -1;
  unsigned day = 0;
  for (char ch : s.substr(0, d1)) {
    if (!std::isdigit(static_cast<unsigned char>(ch))) return -1;
    day = day * 10 + static_cast<unsigned>(ch - '0');
  }
  int year = 0;
  for (char ch : s.substr(d2 + 1)) {
    if (!std::isdigit(static_cast<unsigned char>(ch))) return -1;
    year = year * 10 + (ch - '0');
  }
  const auto mon = s.substr(d1 + 1, 3);
  unsigned m = 0;
  for (unsigned i = 0; i < month_names.size(); ++i) {
    const auto n = month_names[i];
    bool eq = true;
    for (std::size_t k = 0; k < 3; ++k)
      eq = eq && std::tolower(static_cast<unsigned char>(mon[k])) ==
                     std::tolower(static_cast<unsigned char>(n[k]));
    if (eq) m = i + 1;
  }
  if (m == 0 || day < 1 || day > 31) return -1;
  return days_from_civil(year, m, day) * 86400;
}

std::int64_t message_generator::date_of(std::uint32_t uid) const {
  const std::int64_t n = messages == 0 ? 1 : static_cast<std::int64_t>(messages);
  const std::int64_t step = std::max<std::int64_t>(1, 10 * 86400 / n);
  return base_time - (n - static_cast<std::int64_t>(uid)) * step;
}

bool message_generator::initially_seen(std::size_t user, std::uint32_t uid) const {
  return mix(seed, user, uid, 0x5ee0) % 3 != 0;
}

generated_message message_generator::generate(std::size_t user, std::uint32_t uid) const {
  generated_message m;
  const std::uint64_t h = mix(seed, user, uid, 0xc0ffee);
  const auto customer = h % 50;
  const auto person = (h >> 8) % 20;
  m.date = date_of(uid);
  m.multipart = uid % 10 == 0;

  std::string subject{subject_prefixes[(h >> 16) % subject_prefixes.size()]};
  subject += subjects[(h >> 20) % subjects.size()];
  if (uid % 5 == 0) subject += fmt::format(" (OPP-{})", 1000 + (h >> 28) % 100);
  if (uid % 7 == 0) subject += fmt::format(" [TT{}]", 1 + (h >> 36) % 500);

  std::string& hd = m.header;
  hd.reserve(512);
  hd += fmt::format("Return-Path: <person{}@customer{}.example>\r\n", person, customer);
  hd += fmt::format("From: \"Person {}\" <person{}@customer{}.example>\r\n", person, person,
                    customer);
  hd += fmt::format("To: sim{}@tenant.example\r\n", user);
  if ((h >> 44) % 4 == 0) {
    const auto cc_customer = (h >> 48) % 50;
    const auto cc_person = (h >> 54) % 20;
    hd += fmt::format("Cc: \"Person {}\" <person{}@customer{}.example>\r\n", cc_person, cc_person,
                      cc_customer);
  }
  hd += fmt::format("Subject: {}\r\n", subject);
  hd += fmt::format("Date: {}\r\n", rfc5322_date(m.date));
  hd += fmt::format("Message-ID: <sim{}.{}.{}@sim.example>\r\n", user, uid, seed);
  hd += "MIME-Version: 1.0\r\n";

  const std::string boundary = fmt::format("=_sim_{}_{}_{}", user, uid, seed);
  if (m.multipart) {
    hd += fmt::format("Content-Type: multipart/mixed; boundary=\"{}\"\r\n", boundary);
  } else {
    hd += "Content-Type: text/plain; charset=us-ascii\r\n";
    hd += "Content-Transfer-Encoding: 7bit\r\n";
  }
  hd += "\r\n";

  std::string text;
  text.reserve(message_bytes + 256);
  text += fmt::format("Hello sim{},\r\n\r\n", user);
  const std::size_t attachment_budget = m.multipart ? 1200 : 0;
  const std::size_t target =
      message_bytes > hd.size() + attachment_budget + 64 ? message_bytes - hd.size() - attachment_budget - 64 : 64;
  // Lines of the text: greeting (2), filler, sign-off (3).
  const std::size_t text_lines = 2 + append_filler(text, h, target) + 3;
  text += fmt::format("\r\nRegards,\r\nPerson {}\r\n", person);

  if (!m.multipart) {
    m.body = std::move(text);
    const auto& text = m.body;
    m.body_basic = fmt::format(R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" {} {}))",
                               text.size(), text_lines);
    m.bodystructure =
        fmt::format(R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" {} {} NIL NIL NIL NIL))",
                    text.size(), text_lines);
    return m;
  }

  const std::string name = fmt::format("quote-{}.pdf", uid);
  std::string pdf = fmt::format(
      "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
      "2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n% quote for sim{} uid {}\n",
      user, uid);
  while (pdf.size() < 600) pdf += fmt::format("% {:016x}\n", mix(h, pdf.size()));
  pdf += "trailer\n<< /Root 1 0 R >>\n%%EOF\n";
  std::string b64;
  base64_append(b64, pdf);

  std::string& b = m.body;
  b += "This is a multi-part message in MIME format.\r\n";
  b += fmt::format("--{}\r\n", boundary);
  b += "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
  b += text;
  b += fmt::format("\r\n--{}\r\n", boundary);
  b += fmt::format("Content-Type: application/pdf; name=\"{}\"\r\n", name);
  b += fmt::format("Content-Disposition: attachment; filename=\"{}\"\r\n", name);
  b += "Content-Transfer-Encoding: base64\r\n\r\n";
  b += b64;
  b += fmt::format("\r\n--{}--\r\n", boundary);

  const auto text_part = fmt::format(R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" {} {})",
                                     text.size(), text_lines);
  const auto pdf_part =
      fmt::format(R"(("APPLICATION" "PDF" ("NAME" "{}") NIL NIL "BASE64" {})", name, b64.size());
  m.body_basic = fmt::format(R"(({}){}) "MIXED")", text_part, pdf_part);
  m.bodystructure = fmt::format(
      R"(({} NIL NIL NIL NIL){} NIL ("ATTACHMENT" ("FILENAME" "{}")) NIL NIL) "MIXED" ("BOUNDARY" "{}") NIL NIL NIL))",
      text_part, pdf_part, name, boundary);
  return m;
}

}  // namespace mscan::sim
