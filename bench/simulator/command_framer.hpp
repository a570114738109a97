#pragma once
// Sans-I/O framing and tokenizing of IMAP client commands (RFC 3501 §2.2, LITERAL+ RFC 7888).
//
// command_framer finds where one complete command (its line plus any literals it announces)
// ends in the bytes received so far, and tells the connection when a synchronising literal
// needs a "+" continuation. tokenizer splits that command into atoms, strings and
// parenthesised lists. Neither knows a socket nor what a command means.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mscan::sim {

struct frame {
  enum class kind {
    need_more,          // no complete command yet: read more
    send_continuation,  // a synchronising literal was announced: send "+ ..." then read more
    complete,           // the first `length` bytes are one command (ending in CRLF)
    too_long,           // a line or literal exceeds the limits: reject and close
  };
  kind what = kind::need_more;
  std::size_t length = 0;
};

class command_framer {
 public:
  command_framer(std::size_t max_line, std::size_t max_literal)
      : max_line_(max_line), max_literal_(max_literal) {}
  // `buffered` always starts at the first byte of the pending command. After `complete`,
  // the caller removes `length` bytes and the framer starts fresh.
  frame next(std::string_view buffered);

 private:
  std::size_t max_line_;
  std::size_t max_literal_;
  std::size_t scanned_ = 0;              // bytes of earlier lines+literals of this command
  std::size_t continuation_sent_at_ = SIZE_MAX;  // literal start for which "+" went out
};

struct token {
  enum class kind { atom, quoted, literal, list, end, error };
  kind what = kind::end;
  std::string text;  // atom text; string contents; list contents without the parentheses
  bool is_string() const { return what == kind::atom || what == kind::quoted || what == kind::literal; }
};

// Tokenizes one framed command (the trailing CRLF may be present or not).
class tokenizer {
 public:
  explicit tokenizer(std::string_view s) : s_(s) {}
  token next();
  // Everything not yet consumed, leading spaces skipped, trailing CRLF removed.
  std::string_view rest();
  bool at_end();

 private:
  void skip_spaces();
  std::string_view s_;
  std::size_t pos_ = 0;
};

bool iequals(std::string_view a, std::string_view b);
std::string to_upper(std::string_view s);

}  // namespace mscan::sim
