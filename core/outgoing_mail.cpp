#include "core/outgoing_mail.hpp"
#include "common/text.hpp"

#include "protocols/imap/command_writer.hpp"  // base64_encode

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <random>

namespace mscan::core {

namespace {

bool plain_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f;
  });
}

// Quoted-printable (RFC 2045 6.7): lines of at most 76 characters, CRLF line ends.
std::string quoted_printable(std::string_view text) {
  std::string out;
  std::size_t col = 0;
  auto put = [&](std::string_view piece) {
    if (col + piece.size() > 75) {
      out += "=\r\n";
      col = 0;
    }
    out += piece;
    col += piece.size();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      out += "\r\n";
      col = 0;
      continue;
    }
    const auto u = static_cast<unsigned char>(c);
    const bool next_is_eol = i + 1 == text.size() || text[i + 1] == '\r' || text[i + 1] == '\n';
    // Trailing white space is encoded (transports strip it); so is a leading '.' (some
    // servers mangle it) and "From " at the start of a line (mbox).
    const bool literal = (u >= 33 && u <= 126 && c != '=' && !(col == 0 && c == '.')) ||
                         ((c == ' ' || c == '\t') && !next_is_eol);
    const bool from_line = col == 0 && c == 'F' && text.substr(i, 5) == "From ";
    if (literal && !from_line) put(std::string_view{&text[i], 1});
    else put(fmt::format("={:02X}", u));
  }
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
  return out;
}

std::string rfc5322_date(std::int64_t t) {
  return utc_time(t, "%a, %d %b %Y %H:%M:%S +0000");
}

std::string one_line(std::string_view s) {
  std::string out;
  for (char c : s) out += (c == '\r' || c == '\n') ? ' ' : c;
  return out;
}

} // namespace

std::string encode_header_text(std::string_view utf8) {
  if (plain_ascii(utf8)) return std::string{utf8};
  // Encoded words of at most 75 characters, split between UTF-8 sequences, folded.
  std::string out;
  std::size_t i = 0;
  while (i < utf8.size()) {
    std::size_t n = std::min<std::size_t>(45, utf8.size() - i);
    while (i + n < utf8.size() && (static_cast<unsigned char>(utf8[i + n]) & 0xC0) == 0x80) --n;
    if (n == 0) n = 1;
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + imap::base64_encode(utf8.substr(i, n)) + "?=";
    i += n;
  }
  return out;
}

std::string new_message_id(std::string_view from_address) {
  const auto at = from_address.rfind('@');
  const auto domain = at == std::string_view::npos ? std::string_view{"mailscan.invalid"} : from_address.substr(at + 1);
  std::random_device rd;
  const std::uint64_t r = (std::uint64_t{rd()} << 32) ^ rd();
  return fmt::format("<mailscan.{:x}.{:016x}@{}>", static_cast<std::uint64_t>(std::time(nullptr)), r, domain);
}

std::string compose(const outgoing_mail& m) {
  std::string h;
  const auto name = one_line(m.from_name);
  if (name.empty()) h += fmt::format("From: {}\r\n", m.from_address);
  else if (plain_ascii(name)) {
    std::string q;
    for (char c : name) {
      if (c == '"' || c == '\\') q += '\\';
      q += c;
    }
    h += fmt::format("From: \"{}\" <{}>\r\n", q, m.from_address);
  } else {
    h += fmt::format("From: {} <{}>\r\n", encode_header_text(name), m.from_address);
  }
  std::string to;
  for (const auto& t : m.to) to += (to.empty() ? "" : ",\r\n ") + t;
  h += "To: " + to + "\r\n";
  h += "Subject: " + encode_header_text(one_line(m.subject)) + "\r\n";
  h += "Date: " + rfc5322_date(m.date) + "\r\n";
  h += "Message-ID: " + m.message_id + "\r\n";
  if (!m.in_reply_to.empty()) h += "In-Reply-To: " + m.in_reply_to + "\r\n";
  // Each id on its own folded line: a long thread never makes a line too long.
  for (std::size_t i = 0; i < m.references.size(); ++i)
    h += (i == 0 ? "References: " : " ") + m.references[i] + "\r\n";
  if (m.auto_submitted) h += "Auto-Submitted: auto-generated\r\n";
  h += "MIME-Version: 1.0\r\n";
  h += "Content-Type: text/plain; charset=utf-8\r\n";
  h += "Content-Transfer-Encoding: quoted-printable\r\n";
  return h + "\r\n" + quoted_printable(m.body);
}

} // namespace mscan::core
