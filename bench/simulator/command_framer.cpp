#include "bench/simulator/command_framer.hpp"

#include <cctype>

namespace mscan::sim {

namespace {

// If `line` ends in "{n}" or "{n+}", returns n (and whether it is non-synchronising).
struct literal_announce {
  std::size_t size;
  bool plus;
};
std::optional<literal_announce> trailing_literal(std::string_view line) {
  if (line.empty() || line.back() != '}') return std::nullopt;
  const auto open = line.rfind('{');
  if (open == std::string_view::npos) return std::nullopt;
  auto digits = line.substr(open + 1, line.size() - open - 2);
  bool plus = false;
  if (!digits.empty() && digits.back() == '+') {
    plus = true;
    digits.remove_suffix(1);
  }
  if (digits.empty() || digits.size() > 12) return std::nullopt;
  std::size_t n = 0;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    n = n * 10 + static_cast<std::size_t>(c - '0');
  }
  return literal_announce{n, plus};
}

}  // namespace

frame command_framer::next(std::string_view buf) {
  for (;;) {
    const auto crlf = buf.find("\r\n", scanned_);
    if (crlf == std::string_view::npos) {
      if (buf.size() - scanned_ > max_line_) return {frame::kind::too_long, 0};
      return {frame::kind::need_more, 0};
    }
    if (crlf - scanned_ > max_line_) return {frame::kind::too_long, 0};
    const auto lit = trailing_literal(buf.substr(scanned_, crlf - scanned_));
    if (!lit) {
      const std::size_t length = crlf + 2;
      scanned_ = 0;
      continuation_sent_at_ = SIZE_MAX;
      return {frame::kind::complete, length};
    }
    if (lit->size > max_literal_) return {frame::kind::too_long, 0};
    const std::size_t literal_start = crlf + 2;
    if (buf.size() < literal_start + lit->size) {
      if (!lit->plus && continuation_sent_at_ != literal_start) {
        continuation_sent_at_ = literal_start;
        return {frame::kind::send_continuation, 0};
      }
      return {frame::kind::need_more, 0};
    }
    scanned_ = literal_start + lit->size;
  }
}

void tokenizer::skip_spaces() {
  while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
}

bool tokenizer::at_end() {
  skip_spaces();
  return pos_ >= s_.size() || s_[pos_] == '\r' || s_[pos_] == '\n';
}

std::string_view tokenizer::rest() {
  skip_spaces();
  auto r = s_.substr(std::min(pos_, s_.size()));
  while (!r.empty() && (r.back() == '\n' || r.back() == '\r')) r.remove_suffix(1);
  return r;
}

token tokenizer::next() {
  if (at_end()) return {token::kind::end, {}};
  const char c = s_[pos_];
  if (c == '"') {
    std::string out;
    for (std::size_t i = pos_ + 1; i < s_.size(); ++i) {
      if (s_[i] == '\\' && i + 1 < s_.size()) {
        out += s_[++i];
      } else if (s_[i] == '"') {
        pos_ = i + 1;
        return {token::kind::quoted, std::move(out)};
      } else if (s_[i] == '\r' || s_[i] == '\n') {
        break;
      } else {
        out += s_[i];
      }
    }
    return {token::kind::error, "unterminated quoted string"};
  }
  if (c == '{') {
    const auto close = s_.find('}', pos_);
    if (close == std::string_view::npos || s_.compare(close + 1, 2, "\r\n") != 0)
      return {token::kind::error, "malformed literal"};
    std::size_t n = 0;
    for (std::size_t i = pos_ + 1; i < close; ++i) {
      if (s_[i] == '+' && i + 1 == close) break;
      if (!std::isdigit(static_cast<unsigned char>(s_[i]))) return {token::kind::error, "malformed literal"};
      n = n * 10 + static_cast<std::size_t>(s_[i] - '0');
    }
    const std::size_t start = close + 3;
    if (start + n > s_.size()) return {token::kind::error, "short literal"};
    pos_ = start + n;
    return {token::kind::literal, std::string(s_.substr(start, n))};
  }
  if (c == '(') {
    int depth = 0;
    bool quoted = false;
    for (std::size_t i = pos_; i < s_.size(); ++i) {
      const char ch = s_[i];
      if (quoted) {
        if (ch == '\\') ++i;
        else if (ch == '"') quoted = false;
        continue;
      }
      if (ch == '"') quoted = true;
      else if (ch == '(') ++depth;
      else if (ch == ')' && --depth == 0) {
        std::string inner(s_.substr(pos_ + 1, i - pos_ - 1));
        pos_ = i + 1;
        return {token::kind::list, std::move(inner)};
      }
    }
    return {token::kind::error, "unbalanced parentheses"};
  }
  // Atom; brackets may hold spaces and parentheses (BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>).
  int bracket = 0;
  std::size_t i = pos_;
  for (; i < s_.size(); ++i) {
    const char ch = s_[i];
    if (ch == '[') ++bracket;
    else if (ch == ']') --bracket;
    else if (bracket <= 0 && (ch == ' ' || ch == '\r' || ch == '\n' || ch == '(' || ch == ')')) break;
  }
  std::string atom(s_.substr(pos_, i - pos_));
  pos_ = i;
  if (atom.empty()) {
    ++pos_;
    return {token::kind::error, "unexpected character"};
  }
  return {token::kind::atom, std::move(atom)};
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string to_upper(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return r;
}

}  // namespace mscan::sim
