#include "protocols/pop3/response_parser.hpp"

#include <fmt/format.h>

namespace mscan::pop3 {

namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size())
    return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'a' && c <= 'z')
      c = static_cast<char>(c - 'a' + 'A');
    if (c != prefix[i])
      return false;
  }
  return true;
}

} // namespace

std::string excerpt(std::string_view s, std::size_t max) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > max)
    out += "...";
  return out;
}

response_parser::response_parser(parser_limits limits) : limits_(limits) { expect_.push_back(body_kind::none); }

void response_parser::expect(body_kind k) { expect_.push_back(k); }

void response_parser::feed(std::string_view bytes) {
  // Drop what was consumed: views handed out by take_line() only live within next().
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 4096 && pos_ > buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

std::optional<parse_result> response_parser::fail(std::string detail) {
  broken_ = parse_error{std::move(detail)};
  return *broken_;
}

std::optional<std::string_view> response_parser::take_line() {
  auto nl = buf_.find('\n', pos_);
  if (nl == std::string::npos)
    return std::nullopt;
  auto end = nl;
  if (end > pos_ && buf_[end - 1] == '\r')
    --end;
  std::string_view line(buf_.data() + pos_, end - pos_);
  pos_ = nl + 1;
  return line;
}

bool response_parser::parse_status(std::string_view line, reply& out) {
  std::string_view rest;
  if (starts_with_ci(line, "+OK") && (line.size() == 3 || line[3] == ' ')) {
    out.kind = reply_kind::ok;
    rest = line.substr(std::min<std::size_t>(4, line.size()));
  } else if (starts_with_ci(line, "-ERR") && (line.size() == 4 || line[4] == ' ')) {
    out.kind = reply_kind::err;
    rest = line.substr(std::min<std::size_t>(5, line.size()));
  } else if (!line.empty() && line[0] == '+' && (line.size() == 1 || line[1] == ' ')) {
    out.kind = reply_kind::continuation;
    out.text = std::string(line.substr(std::min<std::size_t>(2, line.size())));
    return true;
  } else {
    return false;
  }
  if (!rest.empty() && rest[0] == '[') {
    if (auto close = rest.find(']'); close != std::string_view::npos) {
      for (char c : rest.substr(1, close - 1))
        out.code += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
      rest = rest.substr(close + 1);
      while (!rest.empty() && rest[0] == ' ')
        rest.remove_prefix(1);
    }
  }
  out.text = std::string(rest);
  return true;
}

// Streams a RETR/TOP body: never waits for a whole line, so a line without end cannot grow
// the buffer; only the start of a line needs up to three bytes of look-ahead (".\r\n").
bool response_parser::body_message() {
  auto keep = [this](const char* p, std::size_t n) {
    auto room = limits_.max_message_bytes - std::min(limits_.max_message_bytes, current_.message.size());
    if (n > room) {
      current_.truncated = true;
      n = room;
    }
    current_.message.append(p, n);
  };
  for (;;) {
    if (line_start_) {
      auto avail = buf_.size() - pos_;
      if (avail == 0)
        return false;
      if (buf_[pos_] == '.') {
        if (avail < 2)
          return false;
        if (buf_[pos_ + 1] == '\n') {
          pos_ += 2;
          return true;
        }
        if (buf_[pos_ + 1] == '\r') {
          if (avail < 3)
            return false;
          if (buf_[pos_ + 2] == '\n') {
            pos_ += 3;
            return true;
          }
        }
        ++pos_;  // the stuffed dot
      }
      line_start_ = false;
    }
    auto nl = buf_.find('\n', pos_);
    if (nl == std::string::npos) {
      auto end = buf_.size();
      if (end > pos_ && buf_[end - 1] == '\r')
        --end;  // maybe the CR of CRLF: decided with the next bytes
      keep(buf_.data() + pos_, end - pos_);
      pos_ = end;
      return false;
    }
    auto end = nl;
    if (end > pos_ && buf_[end - 1] == '\r')
      --end;
    keep(buf_.data() + pos_, end - pos_);
    keep("\r\n", 2);
    pos_ = nl + 1;
    line_start_ = true;
  }
}

bool response_parser::body_listing(std::optional<parse_result>& err) {
  for (;;) {
    auto start = pos_;
    auto line = take_line();
    if (!line) {
      if (buf_.size() - pos_ > limits_.max_line)
        err = fail(fmt::format("a listing line is longer than {} bytes", limits_.max_line));
      return false;
    }
    if (line->size() > limits_.max_line) {
      pos_ = start;
      err = fail(fmt::format("a listing line is longer than {} bytes", limits_.max_line));
      return false;
    }
    if (*line == ".")
      return true;
    if (!line->empty() && (*line)[0] == '.')
      line->remove_prefix(1);
    if (current_.lines.size() >= limits_.max_lines) {
      err = fail(fmt::format("a listing has more than {} lines", limits_.max_lines));
      return false;
    }
    current_.lines.emplace_back(*line);
  }
}

std::optional<parse_result> response_parser::next() {
  if (broken_)
    return *broken_;
  if (state_ == state::status) {
    if (pos_ == buf_.size())
      return std::nullopt;
    if (expect_.empty()) {
      // Bytes ahead of the command they answer can only be a server talking out of turn;
      // they wait (bounded) in case the owner is about to send that command.
      if (buf_.size() - pos_ > limits_.max_line)
        return fail("unexpected data from the server: '" + excerpt(std::string_view(buf_).substr(pos_)) + "'");
      return std::nullopt;
    }
    auto line = take_line();
    if (!line) {
      if (buf_.size() - pos_ > limits_.max_line)
        return fail(fmt::format("a status line is longer than {} bytes", limits_.max_line));
      return std::nullopt;
    }
    if (line->size() > limits_.max_line)
      return fail(fmt::format("a status line is longer than {} bytes", limits_.max_line));
    reply r;
    if (!parse_status(*line, r))
      return fail("expected +OK or -ERR, got '" + excerpt(*line) + "'");
    if (r.kind == reply_kind::continuation)
      return r;
    if (r.kind == reply_kind::err || expect_.front() == body_kind::none) {
      expect_.pop_front();
      return r;
    }
    current_ = std::move(r);
    state_ = state::body;
    line_start_ = true;
  }
  std::optional<parse_result> err;
  bool done = expect_.front() == body_kind::message ? body_message() : body_listing(err);
  if (err)
    return err;
  if (!done)
    return std::nullopt;
  expect_.pop_front();
  state_ = state::status;
  return std::move(current_);
}

} // namespace mscan::pop3
