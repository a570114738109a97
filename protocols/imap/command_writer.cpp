#include "protocols/imap/command_writer.hpp"

#include "protocols/imap/response.hpp"
#include "protocols/imap/utf7.hpp"

namespace mscan::imap {

namespace {

bool is_atom_char(unsigned char c) {
  if (c <= 0x20 || c >= 0x7F) return false;
  switch (c) {
    case '(': case ')': case '{': case '%': case '*': case '"': case '\\': case ']': return false;
    default: return true;
  }
}

bool quotable(std::string_view s, bool utf8) {
  for (unsigned char c : s) {
    if (c == '\0' || c == '\r' || c == '\n') return false;
    if (c >= 0x80 && !utf8) return false;
  }
  return true;
}

} // namespace

command_builder::command_builder(std::string tag, std::string_view verb, const writer_caps& caps)
    : caps_(caps) {
  cmd_.tag = std::move(tag);
  cmd_.parts.emplace_back();
  auto& p = cmd_.parts.back();
  p.reserve(64);
  p += cmd_.tag;
  p += ' ';
  p += verb;
}

command_builder& command_builder::atom(std::string_view a) {
  cmd_.parts.back() += ' ';
  cmd_.parts.back() += a;
  return *this;
}

command_builder& command_builder::raw(std::string_view r) {
  cmd_.parts.back() += r;
  return *this;
}

void command_builder::literal(std::string_view s) {
  auto& p = cmd_.parts.back();
  const bool plus = caps_.literal_plus || (caps_.literal_minus && s.size() <= 4096);
  p += '{';
  p += std::to_string(s.size());
  p += plus ? "+}\r\n" : "}\r\n";
  if (!plus) cmd_.parts.emplace_back();
  cmd_.parts.back() += s;
}

command_builder& command_builder::string(std::string_view s) {
  cmd_.parts.back() += ' ';
  if (!quotable(s, caps_.utf8_accept) || s.size() > 1024) {
    literal(s);
    return *this;
  }
  auto& p = cmd_.parts.back();
  p += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') p += '\\';
    p += c;
  }
  p += '"';
  return *this;
}

command_builder& command_builder::astring(std::string_view s) {
  bool atom_ok = !s.empty() && !iequals(s, "NIL");
  for (unsigned char c : s)
    if (!is_atom_char(c)) { atom_ok = false; break; }
  return atom_ok ? atom(s) : string(s);
}

command_builder& command_builder::mailbox(std::string_view name) {
  if (iequals(name, "INBOX")) return atom("INBOX");
  if (caps_.utf8_accept) return astring(name);
  auto enc = utf7_encode(name);
  return astring(enc ? std::string_view(*enc) : name);
}

command command_builder::finish() {
  cmd_.parts.back() += "\r\n";
  return std::move(cmd_);
}

std::string sequence_set(std::span<const std::uint32_t> ids) {
  std::string out;
  std::size_t i = 0;
  while (i < ids.size()) {
    std::size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(ids[i]);
    if (j > i) {
      out += ':';
      out += std::to_string(ids[j]);
    }
    i = j + 1;
  }
  return out;
}

std::string base64_encode(std::string_view in) {
  static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                            (static_cast<unsigned char>(in[i + 1]) << 8) |
                            static_cast<unsigned char>(in[i + 2]);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i < in.size()) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < in.size() ? tbl[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string sasl_plain(std::string_view user, std::string_view password) {
  std::string raw;
  raw.reserve(user.size() + password.size() + 2);
  raw += '\0';
  raw += user;
  raw += '\0';
  raw += password;
  return base64_encode(raw);
}

std::string sasl_xoauth2(std::string_view user, std::string_view token) {
  std::string raw = "user=";
  raw += user;
  raw += "\x01" "auth=Bearer ";
  raw += token;
  raw += "\x01\x01";
  return base64_encode(raw);
}

} // namespace mscan::imap
