#include "protocols/imap/response_parser.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include <fmt/format.h>

namespace mscan::imap {

namespace {

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

std::string to_upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = upper(c);
  return out;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

bool parse_u32(std::string_view s, std::uint32_t& out) {
  std::uint64_t v = 0;
  if (!parse_u64(s, v) || v > std::numeric_limits<std::uint32_t>::max()) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

code_kind code_from_name(std::string_view n) {
  struct entry { std::string_view name; code_kind kind; };
  static constexpr entry table[] = {
      {"ALERT", code_kind::alert}, {"BADCHARSET", code_kind::badcharset},
      {"CAPABILITY", code_kind::capability}, {"PARSE", code_kind::parse},
      {"PERMANENTFLAGS", code_kind::permanentflags}, {"READ-ONLY", code_kind::read_only},
      {"READ-WRITE", code_kind::read_write}, {"TRYCREATE", code_kind::trycreate},
      {"UIDNEXT", code_kind::uidnext}, {"UIDVALIDITY", code_kind::uidvalidity},
      {"UNSEEN", code_kind::unseen}, {"HIGHESTMODSEQ", code_kind::highestmodseq},
      {"NOMODSEQ", code_kind::nomodseq}, {"APPENDUID", code_kind::appenduid},
      {"COPYUID", code_kind::copyuid}, {"UIDNOTSTICKY", code_kind::uidnotsticky},
      {"CLOSED", code_kind::closed}, {"AUTHENTICATIONFAILED", code_kind::authenticationfailed},
      {"AUTHORIZATIONFAILED", code_kind::authorizationfailed}, {"EXPIRED", code_kind::expired},
      {"PRIVACYREQUIRED", code_kind::privacyrequired}, {"CONTACTADMIN", code_kind::contactadmin},
      {"NOPERM", code_kind::noperm}, {"INUSE", code_kind::inuse},
      {"EXPUNGEISSUED", code_kind::expungeissued}, {"CORRUPTION", code_kind::corruption},
      {"SERVERBUG", code_kind::serverbug}, {"CLIENTBUG", code_kind::clientbug},
      {"CANNOT", code_kind::cannot}, {"LIMIT", code_kind::limit},
      {"OVERQUOTA", code_kind::overquota}, {"ALREADYEXISTS", code_kind::alreadyexists},
      {"NONEXISTENT", code_kind::nonexistent}, {"UNAVAILABLE", code_kind::unavailable},
      {"WEBALERT", code_kind::webalert},
  };
  for (const auto& e : table)
    if (iequals(n, e.name)) return e.kind;
  return code_kind::other;
}

void split_words(std::string_view s, std::vector<std::string>& out, bool up) {
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.emplace_back(up ? to_upper(s.substr(i, j - i)) : std::string(s.substr(i, j - i)));
    i = j;
  }
}

} // namespace

// Read position over the collected text of one response.
class response_parser::cursor {
 public:
  explicit cursor(std::string_view s) : s_(s) {}
  bool at_eol() const { return p_ >= s_.size() || s_[p_] == '\r' || s_[p_] == '\n'; }
  char peek() const { return p_ < s_.size() ? s_[p_] : '\0'; }
  char peek_at(std::size_t k) const { return p_ + k < s_.size() ? s_[p_ + k] : '\0'; }
  void skip_spaces() { while (p_ < s_.size() && s_[p_] == ' ') ++p_; }
  // A bare word up to SP, CR or LF.
  std::string_view word() {
    const std::size_t b = p_;
    while (p_ < s_.size() && s_[p_] != ' ' && s_[p_] != '\r' && s_[p_] != '\n') ++p_;
    return s_.substr(b, p_ - b);
  }
  // The rest of the current line, without its line break.
  std::string_view rest_of_line() {
    const std::size_t b = p_;
    while (p_ < s_.size() && s_[p_] != '\r' && s_[p_] != '\n') ++p_;
    return s_.substr(b, p_ - b);
  }
  std::size_t pos() const { return p_; }
  void set_pos(std::size_t p) { p_ = p; }
  std::string_view text() const { return s_; }
  // True when the cursor is at the response's final line break.
  bool at_final_eol() const {
    if (p_ >= s_.size()) return true;
    if (s_[p_] == '\r') return p_ + 2 >= s_.size();
    if (s_[p_] == '\n') return p_ + 1 >= s_.size();
    return false;
  }

 private:
  std::string_view s_;
  std::size_t p_ = 0;
};

response_parser::response_parser(parser_limits limits) : limits_(limits) {
  text_.reserve(1024);
  nodes_.reserve(256);
}

std::string response_parser::excerpt(std::string_view bytes, std::size_t max) {
  std::string out;
  const std::size_t n = bytes.size() < max ? bytes.size() : max;
  out.reserve(n + 8);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  if (bytes.size() > max) out += "...";
  return out;
}

bool response_parser::at_boundary() const noexcept {
  return state_ == state::ready || (state_ == state::text && text_.empty());
}

feed_result response_parser::fail(std::string message, std::string_view bytes,
                                  std::size_t consumed) {
  failed_ = true;
  error_.message = std::move(message);
  error_.excerpt = excerpt(bytes);
  return {consumed, feed_status::failed};
}

feed_result response_parser::feed(std::string_view in) {
  if (failed_) return {0, feed_status::failed};
  if (state_ == state::ready) {
    // Thousands of sessions each keep a parser: give back what one huge response grew.
    if (text_.capacity() > (1u << 20)) {
      text_ = std::string();
      text_.reserve(1024);
    }
    if (nodes_.capacity() > 65536) {
      nodes_ = std::vector<node>();
      nodes_.reserve(256);
    }
    text_.clear();
    literals_.clear();
    line_start_ = 0;
    response_size_ = 0;
    state_ = state::text;
  }
  std::size_t pos = 0;
  while (pos < in.size()) {
    if (state_ == state::literal) {
      const std::size_t take = std::min(literal_remaining_, in.size() - pos);
      literals_.back().append(in.data() + pos, take);
      pos += take;
      literal_remaining_ -= take;
      if (literal_remaining_ == 0) {
        state_ = state::text;
        line_start_ = text_.size();
      }
      continue;
    }
    const char* b = in.data() + pos;
    const std::size_t avail = in.size() - pos;
    const auto* nl = static_cast<const char*>(std::memchr(b, '\n', avail));
    const std::size_t take = nl ? static_cast<std::size_t>(nl - b) + 1 : avail;
    // The first violation by byte position is reported, whatever the chunking: the index
    // (within this chunk) of the byte that breaks each rule, if any.
    constexpr std::size_t none = static_cast<std::size_t>(-1);
    const std::size_t line_len = text_.size() - line_start_;
    const std::size_t line_room = limits_.max_line_length + 2 > line_len
                                      ? limits_.max_line_length + 2 - line_len : 0;
    const std::size_t size_room = limits_.max_response_size > response_size_
                                      ? limits_.max_response_size - response_size_ : 0;
    const std::size_t line_at = take > line_room ? line_room : none;
    const std::size_t size_at = take > size_room ? size_room : none;
    const auto* nul = static_cast<const char*>(std::memchr(b, '\0', take));
    const std::size_t nul_at = nul ? static_cast<std::size_t>(nul - b) : none;
    const std::size_t first = std::min({line_at, size_at, nul_at});
    if (first != none) {
      // Shown: the offending line from its start up to the offending byte.
      std::string shown = text_.substr(line_start_, 200);
      shown.append(b, std::min<std::size_t>(first + 1, 200));
      if (first == nul_at) return fail("NUL byte in response line", shown, pos);
      if (first == line_at)
        return fail(fmt::format("response line longer than {} bytes", limits_.max_line_length),
                    shown, pos);
      return fail(fmt::format("response larger than {} bytes", limits_.max_response_size),
                  shown, pos);
    }
    response_size_ += take;
    text_.append(b, take);
    pos += take;
    if (!nl) break;
    if (!end_of_line()) return {pos, feed_status::failed};
    if (state_ == state::ready) {
      if (!parse_response()) return {pos, feed_status::failed};
      return {pos, feed_status::ready};
    }
  }
  return {pos, feed_status::need_more};
}

bool response_parser::end_of_line() {
  std::string_view line(text_.data() + line_start_, text_.size() - line_start_);
  line.remove_suffix(1);  // '\n'
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty() && line_start_ == 0) {
    // A blank line between responses: tolerated and dropped.
    text_.clear();
    line_start_ = 0;
    response_size_ = 0;
    return true;
  }
  // A line ending in {n}, {n+} or ~{n} announces a literal of n bytes.
  if (!line.empty() && line.back() == '}') {
    std::size_t i = line.size() - 1;
    if (i > 0 && line[i - 1] == '+') --i;
    std::size_t digits_end = i;
    while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9') --i;
    if (i > 0 && line[i - 1] == '{' && digits_end > i) {
      std::uint64_t n = 0;
      if (!parse_u64(line.substr(i, digits_end - i), n) || n > limits_.max_literal_size) {
        fail(fmt::format("literal larger than {} bytes announced", limits_.max_literal_size),
             line.substr(line.size() > 120 ? line.size() - 120 : 0), 0);
        return false;
      }
      if (response_size_ + n > limits_.max_response_size) {
        fail(fmt::format("response larger than {} bytes", limits_.max_response_size),
             line.substr(line.size() > 120 ? line.size() - 120 : 0), 0);
        return false;
      }
      response_size_ += n;
      literals_.emplace_back();
      literals_.back().reserve(n);
      literal_remaining_ = n;
      state_ = n > 0 ? state::literal : state::text;
      line_start_ = text_.size();
      return true;
    }
  }
  state_ = state::ready;
  return true;
}

response response_parser::take() { return std::move(current_); }

std::string_view response_parser::node_view(std::size_t i) const {
  const node& n = nodes_[i];
  return std::string_view(text_.data() + n.offset, n.length);
}

std::string response_parser::node_string(std::size_t i) {
  const node& n = nodes_[i];
  switch (n.type) {
    case node::kind::literal: return literals_[n.offset];
    case node::kind::atom: return std::string(node_view(i));
    case node::kind::quoted: {
      const auto v = node_view(i);
      if (!n.escaped) return std::string(v);
      std::string out;
      out.reserve(v.size());
      for (std::size_t k = 0; k < v.size(); ++k) {
        if (v[k] == '\\' && k + 1 < v.size()) ++k;
        out += v[k];
      }
      return out;
    }
    default: return {};
  }
}

std::string response_parser::take_node_string(std::size_t i) {
  if (nodes_[i].type == node::kind::literal) return std::move(literals_[nodes_[i].offset]);
  return node_string(i);
}

bool response_parser::node_number(std::size_t i, std::uint64_t& out) const {
  return nodes_[i].type == node::kind::atom && parse_u64(node_view(i), out);
}

std::vector<std::string> response_parser::node_atoms(std::size_t list) {
  std::vector<std::string> out;
  if (nodes_[list].type != node::kind::list) return out;
  out.reserve(nodes_[list].length);
  for (std::size_t i = list + 1; i < nodes_[list].end; i = nodes_[i].end)
    out.push_back(node_string(i));
  return out;
}

sexp response_parser::to_sexp(std::size_t i) {
  sexp out;
  switch (nodes_[i].type) {
    case node::kind::nil: out.type = sexp::kind::nil; break;
    case node::kind::atom: out.type = sexp::kind::atom; out.text = node_string(i); break;
    case node::kind::quoted:
    case node::kind::literal: out.type = sexp::kind::string; out.text = node_string(i); break;
    case node::kind::list:
      out.type = sexp::kind::list;
      out.items.reserve(nodes_[i].length);
      for (std::size_t k = i + 1; k < nodes_[i].end; k = nodes_[k].end) out.items.push_back(to_sexp(k));
      break;
  }
  return out;
}

// Tokenizes values up to the end of the response (depth_base == 0) into nodes_.
bool response_parser::parse_values(cursor& c, std::size_t) {
  // An explicit stack instead of recursion: depth is bounded by the limit, not the C++ stack.
  std::vector<std::size_t>& stack = open_lists_;
  stack.clear();
  const std::string_view s = c.text();
  auto error_here = [&](std::string message) {
    fail(std::move(message), s.substr(c.pos() > 60 ? c.pos() - 60 : 0, 160), 0);
    return false;
  };
  auto count_child = [&] {
    if (!stack.empty()) ++nodes_[stack.back()].length;
  };
  for (;;) {
    c.skip_spaces();
    if (c.at_eol()) {
      if (!stack.empty()) return error_here("unterminated parenthesised list");
      if (!c.at_final_eol()) return error_here("line break inside a response");
      return true;
    }
    if (nodes_.size() >= limits_.max_items)
      return error_here(fmt::format("more than {} values in one response", limits_.max_items));
    const char ch = c.peek();
    if (ch == ')') {
      if (stack.empty()) return error_here("unbalanced ')'");
      nodes_[stack.back()].end = static_cast<std::uint32_t>(nodes_.size());
      stack.pop_back();
      c.set_pos(c.pos() + 1);
      continue;
    }
    if (ch == '(') {
      if (stack.size() >= limits_.max_depth)
        return error_here(fmt::format("lists nested deeper than {}", limits_.max_depth));
      count_child();
      nodes_.push_back({node::kind::list, false, 0, 0, 0});
      stack.push_back(nodes_.size() - 1);
      c.set_pos(c.pos() + 1);
      continue;
    }
    count_child();
    const std::uint32_t self = static_cast<std::uint32_t>(nodes_.size());
    if (ch == '"') {
      std::size_t p = c.pos() + 1;
      bool escaped = false;
      while (p < s.size() && s[p] != '"') {
        if (s[p] == '\r' || s[p] == '\n') break;
        if (s[p] == '\\') {
          escaped = true;
          if (p + 1 < s.size() && s[p + 1] != '\r' && s[p + 1] != '\n') ++p;
        }
        ++p;
      }
      if (p >= s.size() || s[p] != '"') return error_here("unterminated quoted string");
      nodes_.push_back({node::kind::quoted, escaped, static_cast<std::uint32_t>(c.pos() + 1),
                        static_cast<std::uint32_t>(p - c.pos() - 1), self + 1});
      c.set_pos(p + 1);
      continue;
    }
    if (ch == '{' || (ch == '~' && c.peek_at(1) == '{')) {
      std::size_t p = c.pos() + (ch == '~' ? 2 : 1);
      while (p < s.size() && s[p] >= '0' && s[p] <= '9') ++p;
      if (p < s.size() && s[p] == '+') ++p;
      if (p >= s.size() || s[p] != '}') return error_here("malformed literal announcement");
      ++p;
      if (p < s.size() && s[p] == '\r') ++p;
      if (p >= s.size() || s[p] != '\n' || next_literal_ >= literals_.size())
        return error_here("literal announcement not at the end of a line");
      nodes_.push_back({node::kind::literal, false, static_cast<std::uint32_t>(next_literal_++), 0,
                        self + 1});
      c.set_pos(p + 1);
      continue;
    }
    // Atom; a '[' opens a section spec (BODY[HEADER.FIELDS (A B)]<0>) that may hold spaces.
    std::size_t p = c.pos();
    int brackets = 0;
    while (p < s.size()) {
      const char a = s[p];
      if (a == '\r' || a == '\n') break;
      if (brackets == 0 && (a == ' ' || a == '(' || a == ')')) break;
      if (a == '[') ++brackets;
      else if (a == ']' && brackets > 0) --brackets;
      ++p;
    }
    if (brackets != 0) {
      // No matching ']' on the line: '[' was an ordinary atom character ("foo[bar").
      p = c.pos();
      while (p < s.size() && s[p] != ' ' && s[p] != '(' && s[p] != ')' && s[p] != '\r' &&
             s[p] != '\n')
        ++p;
    }
    const std::string_view atom = s.substr(c.pos(), p - c.pos());
    if (atom.empty()) return error_here("unexpected character");
    const bool nil = iequals(atom, "NIL");
    nodes_.push_back({nil ? node::kind::nil : node::kind::atom, false,
                      static_cast<std::uint32_t>(c.pos()), static_cast<std::uint32_t>(atom.size()),
                      self + 1});
    c.set_pos(p);
  }
}

bool response_parser::parse_code(std::string_view raw, response_code& out) {
  const std::size_t sp = raw.find(' ');
  const std::string_view name = raw.substr(0, sp);
  const std::string_view args = sp == std::string_view::npos ? std::string_view{} : raw.substr(sp + 1);
  out.kind = code_from_name(name);
  out.name = to_upper(name);
  out.arguments = std::string(args);
  switch (out.kind) {
    case code_kind::uidnext:
    case code_kind::uidvalidity:
    case code_kind::unseen:
    case code_kind::highestmodseq:
      if (!parse_u64(args, out.number)) out.number = 0;
      break;
    case code_kind::capability: split_words(args, out.list, true); break;
    case code_kind::permanentflags:
    case code_kind::badcharset: {
      std::string_view a = args;
      if (!a.empty() && a.front() == '(') a.remove_prefix(1);
      if (!a.empty() && a.back() == ')') a.remove_suffix(1);
      split_words(a, out.list, false);
      break;
    }
    default: break;
  }
  return true;
}

bool response_parser::parse_status(cursor& c, status_response& out) {
  c.skip_spaces();
  const std::string_view s = c.text();
  if (c.peek() == '[') {
    // The code ends at the first ']' outside quotes and parentheses.
    std::size_t p = c.pos() + 1;
    int depth = 0;
    bool quoted = false;
    for (; p < s.size() && s[p] != '\r' && s[p] != '\n'; ++p) {
      const char a = s[p];
      if (quoted) {
        if (a == '\\') ++p;
        else if (a == '"') quoted = false;
      } else if (a == '"') quoted = true;
      else if (a == '(') ++depth;
      else if (a == ')') --depth;
      else if (a == ']' && depth <= 0) break;
    }
    if (p < s.size() && s[p] == ']') {
      parse_code(s.substr(c.pos() + 1, p - c.pos() - 1), out.code);
      c.set_pos(p + 1);
      c.skip_spaces();
    }
  }
  // Status text runs to the end of the response (a stray literal announcement included).
  std::string_view text = s.substr(c.pos());
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  out.text = std::string(text);
  return true;
}

bool response_parser::parse_response() {
  nodes_.clear();
  next_literal_ = 0;
  cursor c(text_);
  if (c.peek() == '+') {
    c.set_pos(1);
    if (c.peek() == ' ') c.set_pos(2);
    continuation k;
    std::string_view t = c.text().substr(c.pos());
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.remove_suffix(1);
    k.text = std::string(t);
    current_ = std::move(k);
    return true;
  }
  const std::string_view tag = c.word();
  if (tag.empty()) {
    fail("response without a tag", text_, 0);
    return false;
  }
  if (c.peek() != ' ') {
    fail("response without content", text_, 0);
    return false;
  }
  c.skip_spaces();
  if (tag != "*") {
    const std::string_view st = c.word();
    status_response r;
    r.tag = std::string(tag);
    if (iequals(st, "OK")) r.status = status_kind::ok;
    else if (iequals(st, "NO")) r.status = status_kind::no;
    else if (iequals(st, "BAD")) r.status = status_kind::bad;
    else {
      fail("tagged response is not OK, NO or BAD", text_, 0);
      return false;
    }
    parse_status(c, r);
    current_ = std::move(r);
    return true;
  }
  return parse_untagged(c, current_);
}

bool response_parser::parse_untagged(cursor& c, response& out) {
  const std::string_view first = c.word();
  auto bad = [&](std::string_view what) {
    fail(fmt::format("malformed {} response", what), text_, 0);
    return false;
  };
  std::uint32_t number = 0;
  if (parse_u32(first, number)) {
    c.skip_spaces();
    const std::string_view kw = c.word();
    if (iequals(kw, "EXISTS")) { out = exists_data{number}; return true; }
    if (iequals(kw, "RECENT")) { out = recent_data{number}; return true; }
    if (iequals(kw, "EXPUNGE")) { out = expunge_data{number}; return true; }
    if (iequals(kw, "FETCH")) {
      if (!parse_values(c, 0)) return false;
      if (nodes_.empty() || nodes_[0].type != node::kind::list || nodes_[0].end != nodes_.size())
        return bad("FETCH");
      fetch_data f;
      if (!parse_fetch(number, 0, f)) return false;
      out = std::move(f);
      return true;
    }
    out = other_data{to_upper(kw)};
    return true;
  }
  status_response st;
  if (iequals(first, "OK")) st.status = status_kind::ok;
  else if (iequals(first, "NO")) st.status = status_kind::no;
  else if (iequals(first, "BAD")) st.status = status_kind::bad;
  else if (iequals(first, "PREAUTH")) st.status = status_kind::preauth;
  else if (iequals(first, "BYE")) st.status = status_kind::bye;
  else {
    if (!parse_values(c, 0)) return false;
    const std::size_t n = nodes_.size();
    auto is_string = [&](std::size_t i) {
      return i < n && (nodes_[i].type == node::kind::atom || nodes_[i].type == node::kind::quoted ||
                       nodes_[i].type == node::kind::literal);
    };
    // Top-level values are the sibling chain starting at node 0.
    std::vector<std::size_t> top;
    for (std::size_t i = 0; i < n; i = nodes_[i].end) top.push_back(i);
    if (iequals(first, "CAPABILITY") || iequals(first, "ENABLED")) {
      std::vector<std::string> caps;
      caps.reserve(top.size());
      for (auto i : top) {
        if (nodes_[i].type != node::kind::atom) return bad(first);
        caps.push_back(to_upper(node_view(i)));
      }
      if (iequals(first, "CAPABILITY")) out = capability_data{std::move(caps)};
      else out = enabled_data{std::move(caps)};
      return true;
    }
    if (iequals(first, "LIST") || iequals(first, "LSUB")) {
      if (top.size() < 3 || nodes_[top[0]].type != node::kind::list || !is_string(top[2]))
        return bad(first);
      list_data l;
      l.lsub = iequals(first, "LSUB");
      l.flags = node_atoms(top[0]);
      if (nodes_[top[1]].type != node::kind::nil) {
        if (!is_string(top[1])) return bad(first);
        const std::string d = node_string(top[1]);
        if (d.size() != 1) return bad(first);
        l.delimiter = d[0];
      }
      l.mailbox = take_node_string(top[2]);
      out = std::move(l);
      return true;
    }
    if (iequals(first, "STATUS")) {
      if (top.size() != 2 || !is_string(top[0]) || nodes_[top[1]].type != node::kind::list)
        return bad(first);
      status_data sd;
      sd.mailbox = take_node_string(top[0]);
      const std::size_t l = top[1];
      if (nodes_[l].length % 2 != 0) return bad(first);
      for (std::size_t i = l + 1; i < nodes_[l].end; i = nodes_[nodes_[i].end].end) {
        const std::size_t v = nodes_[i].end;
        std::uint64_t num = 0;
        if (nodes_[i].type != node::kind::atom || !node_number(v, num)) return bad(first);
        const auto name = node_view(i);
        const auto n32 = static_cast<std::uint32_t>(num);
        if (iequals(name, "MESSAGES")) sd.messages = n32;
        else if (iequals(name, "RECENT")) sd.recent = n32;
        else if (iequals(name, "UIDNEXT")) sd.uidnext = n32;
        else if (iequals(name, "UIDVALIDITY")) sd.uidvalidity = n32;
        else if (iequals(name, "UNSEEN")) sd.unseen = n32;
        else if (iequals(name, "HIGHESTMODSEQ")) sd.highestmodseq = num;
      }
      out = std::move(sd);
      return true;
    }
    if (iequals(first, "FLAGS")) {
      if (top.size() != 1 || nodes_[top[0]].type != node::kind::list) return bad(first);
      out = flags_data{node_atoms(top[0])};
      return true;
    }
    if (iequals(first, "SEARCH") || iequals(first, "SORT")) {
      search_data sd;
      sd.ids.reserve(top.size());
      for (auto i : top) {
        std::uint32_t id = 0;
        if (nodes_[i].type == node::kind::list) {
          // (MODSEQ n) from CONDSTORE
          const std::size_t k = i + 1;
          std::uint64_t m = 0;
          if (nodes_[i].length == 2 && iequals(node_view(k), "MODSEQ") && node_number(k + 1, m))
            sd.modseq = m;
          else return bad(first);
        } else if (nodes_[i].type == node::kind::atom && parse_u32(node_view(i), id)) {
          sd.ids.push_back(id);
        } else {
          return bad(first);
        }
      }
      out = std::move(sd);
      return true;
    }
    if (iequals(first, "ESEARCH")) {
      esearch_data e;
      std::size_t k = 0;
      if (k < top.size() && nodes_[top[k]].type == node::kind::list) {
        const std::size_t l = top[k];
        if (nodes_[l].length == 2 && iequals(node_view(l + 1), "TAG") && is_string(l + 2))
          e.tag = node_string(l + 2);
        ++k;
      }
      if (k < top.size() && nodes_[top[k]].type == node::kind::atom && iequals(node_view(top[k]), "UID")) {
        e.uid = true;
        ++k;
      }
      for (; k + 1 < top.size(); k += 2) {
        const auto name = nodes_[top[k]].type == node::kind::atom ? node_view(top[k]) : std::string_view{};
        std::uint64_t num = 0;
        const bool numeric = node_number(top[k + 1], num);
        if (iequals(name, "MIN") && numeric) e.min = static_cast<std::uint32_t>(num);
        else if (iequals(name, "MAX") && numeric) e.max = static_cast<std::uint32_t>(num);
        else if (iequals(name, "COUNT") && numeric) e.count = static_cast<std::uint32_t>(num);
        else if (iequals(name, "MODSEQ") && numeric) e.modseq = num;
        else if (iequals(name, "ALL") && nodes_[top[k + 1]].type == node::kind::atom) e.all = node_string(top[k + 1]);
      }
      out = std::move(e);
      return true;
    }
    if (iequals(first, "VANISHED")) {
      vanished_data v;
      std::size_t k = 0;
      if (k < top.size() && nodes_[top[k]].type == node::kind::list) {
        if (nodes_[top[k]].length == 1 && iequals(node_view(top[k] + 1), "EARLIER")) v.earlier = true;
        ++k;
      }
      if (k + 1 != top.size() || nodes_[top[k]].type != node::kind::atom) return bad(first);
      v.uids = node_string(top[k]);
      out = std::move(v);
      return true;
    }
    if (iequals(first, "ID")) {
      if (top.size() != 1) return bad(first);
      id_data id;
      const std::size_t l = top[0];
      if (nodes_[l].type == node::kind::list) {
        // RFC 2971: at most 30 pairs, field names up to 30 bytes, values up to 1024.
        if (nodes_[l].length % 2 != 0 || nodes_[l].length > 60) return bad(first);
        for (std::size_t i = l + 1; i < nodes_[l].end; i = nodes_[nodes_[i].end].end) {
          const std::size_t v = nodes_[i].end;
          if (!is_string(i) || (!is_string(v) && nodes_[v].type != node::kind::nil)) return bad(first);
          std::string value = nodes_[v].type == node::kind::nil ? std::string{} : node_string(v);
          if (value.size() > 1024) value.resize(1024);
          id.fields.emplace_back(node_string(i).substr(0, 30), std::move(value));
        }
      } else if (nodes_[l].type != node::kind::nil) {
        return bad(first);
      }
      out = std::move(id);
      return true;
    }
    out = other_data{to_upper(first)};
    return true;
  }
  parse_status(c, st);
  out = std::move(st);
  return true;
}

bool response_parser::parse_fetch(std::uint32_t seq, std::size_t list, fetch_data& f) {
  f.seq = seq;
  auto bad = [&](std::string_view what) {
    fail(fmt::format("malformed FETCH item {}", what), text_, 0);
    return false;
  };
  if (nodes_[list].length % 2 != 0) return bad("list (odd number of values)");
  for (std::size_t i = list + 1; i < nodes_[list].end;) {
    const std::size_t v = nodes_[i].end;
    const std::size_t next = nodes_[v].end;
    if (nodes_[i].type != node::kind::atom) return bad("name");
    const std::string_view name = node_view(i);
    const auto vt = nodes_[v].type;
    const bool is_str = vt == node::kind::atom || vt == node::kind::quoted || vt == node::kind::literal;
    std::uint64_t num = 0;
    if (iequals(name, "UID")) {
      if (!node_number(v, num) || num > 0xffffffffu) return bad(name);
      f.uid = static_cast<std::uint32_t>(num);
    } else if (iequals(name, "FLAGS")) {
      if (vt != node::kind::list) return bad(name);
      f.flags = node_atoms(v);
    } else if (iequals(name, "INTERNALDATE")) {
      if (!is_str) return bad(name);
      f.internaldate = node_string(v);
    } else if (iequals(name, "RFC822.SIZE")) {
      if (!node_number(v, num)) return bad(name);
      f.rfc822_size = num;
    } else if (iequals(name, "ENVELOPE")) {
      if (vt != node::kind::list) return bad(name);
      f.envelope = to_sexp(v);
    } else if (iequals(name, "BODYSTRUCTURE") || iequals(name, "BODY")) {
      if (vt != node::kind::list) return bad(name);
      f.bodystructure = to_sexp(v);
    } else if (iequals(name, "MODSEQ")) {
      if (vt != node::kind::list || nodes_[v].length != 1 || !node_number(v + 1, num)) return bad(name);
      f.modseq = num;
    } else if (iequals(name, "X-GM-MSGID") || iequals(name, "X-GM-THRID")) {
      if (!node_number(v, num)) return bad(name);
      (iequals(name, "X-GM-MSGID") ? f.gm_msgid : f.gm_thrid) = num;
    } else if (iequals(name, "EMAILID")) {
      // "(M6d99ac3275bb4e)": a list of one objectid
      if (vt != node::kind::list || nodes_[v].length != 1 ||
          nodes_[v + 1].type != node::kind::atom)
        return bad(name);
      f.email_id = node_string(v + 1);
    } else if (iequals(name, "X-GM-LABELS")) {
      if (vt != node::kind::list) return bad(name);
      f.gm_labels = node_atoms(v);
    } else if (iequals(name, "RFC822") || iequals(name, "RFC822.HEADER") || iequals(name, "RFC822.TEXT")) {
      if (!is_str && vt != node::kind::nil) return bad(name);
      body_section b;
      b.section = name.size() > 7 ? to_upper(name.substr(7)) : std::string{};
      if (vt != node::kind::nil) b.data = take_node_string(v);
      f.sections.push_back(std::move(b));
    } else if (istarts_with(name, "BODY[") || istarts_with(name, "BINARY[")) {
      if (!is_str && vt != node::kind::nil) return bad(name);
      body_section b;
      b.binary = istarts_with(name, "BINARY[");
      const std::size_t open = name.find('[');
      const std::size_t close = name.rfind(']');
      if (close == std::string_view::npos || close < open) return bad(name);
      b.section = std::string(name.substr(open + 1, close - open - 1));
      std::string_view rest = name.substr(close + 1);
      if (!rest.empty()) {
        std::uint32_t origin = 0;
        if (rest.size() < 3 || rest.front() != '<' || rest.back() != '>' ||
            !parse_u32(rest.substr(1, rest.size() - 2), origin))
          return bad(name);
        b.origin = origin;
      }
      if (vt != node::kind::nil) b.data = take_node_string(v);
      f.sections.push_back(std::move(b));
    }
    // Anything else (BINARY.SIZE, THREADID, PREVIEW, ...) is skipped.
    i = next;
  }
  return true;
}

} // namespace mscan::imap
