#include "protocols/smtp/reply_parser.hpp"

#include <fmt/format.h>

namespace mscan::smtp {

std::string reply::text() const {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += " | ";
    out += l;
  }
  return out;
}

std::string excerpt(std::string_view bytes, std::size_t max) {
  std::string out;
  for (char c : bytes.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (u < 0x20 || u >= 0x7f) out += fmt::format("\\x{:02x}", u);
    else out += c;
  }
  if (bytes.size() > max) out += "...";
  return out;
}

std::size_t reply_parser::feed(std::string_view bytes) {
  std::size_t used = 0;
  while (used < bytes.size() && !ready_ && !failed()) {
    const auto nl = bytes.find('\n', used);
    const auto end = nl == std::string_view::npos ? bytes.size() : nl;
    if (line_.size() + (end - used) > limits_.max_line_length) {
      error_ = fmt::format("reply line longer than {} bytes: {}", limits_.max_line_length,
                           excerpt(line_.empty() ? bytes.substr(used) : std::string_view{line_}));
      return used;
    }
    line_.append(bytes.substr(used, end - used));
    used = end;
    if (nl == std::string_view::npos) break;
    ++used;  // the LF
    finish_line();
  }
  return used;
}

void reply_parser::finish_line() {
  // CRLF is the rule; a bare LF is accepted (the line is the same either way).
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  const std::string_view l{line_};
  const bool digits = l.size() >= 3 && l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' &&
                      l[2] >= '0' && l[2] <= '9';
  if (!digits || (l.size() > 3 && l[3] != ' ' && l[3] != '-')) {
    error_ = fmt::format("not an SMTP reply line: {}", excerpt(l));
    return;
  }
  const int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
  if (!current_.lines.empty() && code != current_.code) {
    error_ = fmt::format("reply code changed from {} to {} inside one reply", current_.code, code);
    return;
  }
  if (current_.lines.size() >= limits_.max_lines) {
    error_ = fmt::format("reply with more than {} lines", limits_.max_lines);
    return;
  }
  current_.code = code;
  const bool more = l.size() > 3 && l[3] == '-';
  current_.lines.emplace_back(l.size() > 4 ? l.substr(4) : std::string_view{});
  line_.clear();
  if (more) return;
  // Enhanced status code: "X.Y.Z " at the start of the last line, X matching the class.
  const auto& t = current_.lines.back();
  const auto sp = t.find(' ');
  const std::string_view first = std::string_view{t}.substr(0, sp);
  if (first.size() >= 5 && first[0] == static_cast<char>('0' + code / 100) && first[1] == '.' &&
      first.find_first_not_of("0123456789.") == std::string_view::npos)
    current_.enhanced = std::string{first};
  ready_ = true;
}

reply reply_parser::take() {
  reply r = std::move(current_);
  current_ = {};
  ready_ = false;
  return r;
}

} // namespace mscan::smtp
