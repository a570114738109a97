#pragma once
// POP3 server replies (RFC 1939, RFC 2449 CAPA + extended response codes, RFC 5034 SASL),
// sans-I/O: bytes in, replies out; it never reads a socket.
//
// POP3 replies do not say whether a body follows: a +OK to CAPA/UIDL/LIST/RETR/TOP opens a
// dot-terminated multi-line body, the same +OK to USER or STAT does not. So the owner tells
// the parser what each command it sends expects (expect(), in sending order: pipelining
// works), and the parser answers them in order. A "+ " line (SASL challenge) answers without
// using up the expectation: the command's final +OK/-ERR comes later.
//
// Limits belong to the parser: a status line or a listing line (CAPA, UIDL, LIST) longer than
// max_line, or a listing of more than max_lines lines, is a parse_error; a message body
// (RETR, TOP) is streamed line by line and kept up to max_message_bytes, the rest is read and
// dropped (reply::truncated), so a hostile server cannot grow memory without bound. Bytes
// that arrive while no reply is expected wait (up to max_line) for the next expect().
// Dot-stuffing is undone; bare LF line ends are accepted and every kept line ends in CRLF.
#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mscan::pop3 {

enum class reply_kind { ok, err, continuation };
// none: single line; listing: multi-line, one entry per line; message: multi-line mail text.
enum class body_kind { none, listing, message };

struct reply {
  reply_kind kind = reply_kind::ok;
  std::string code;  // RFC 2449 response code, upper-cased, no brackets ("IN-USE", "SYS/TEMP")
  std::string text;  // the rest of the status line (after the code), or the SASL challenge
  std::vector<std::string> lines;  // listing
  std::string message;             // message: unstuffed, CRLF line ends
  bool truncated = false;          // message: longer than max_message_bytes, rest dropped
};

struct parse_error {
  std::string detail;  // printable, bounded; quotes at most a short excerpt of the input
};

struct parser_limits {
  std::size_t max_line = 8192;
  std::size_t max_lines = 2'000'000;
  std::size_t max_message_bytes = 2 * 1024 * 1024;
};

using parse_result = std::variant<reply, parse_error>;

class response_parser {
 public:
  // The greeting is the first reply expected (single line).
  explicit response_parser(parser_limits limits = {});
  void expect(body_kind k);
  void feed(std::string_view bytes);
  // Next complete reply; nullopt = need more bytes. After a parse_error the parser is broken
  // and keeps returning the same error.
  std::optional<parse_result> next();
  std::size_t expected() const { return expect_.size(); }
  const parser_limits& limits() const { return limits_; }

 private:
  enum class state { status, body };
  std::optional<std::string_view> take_line();  // without CR/LF; nullopt = incomplete
  std::optional<parse_result> fail(std::string detail);
  bool parse_status(std::string_view line, reply& out);
  bool body_message();                            // true = terminator seen
  bool body_listing(std::optional<parse_result>& err);

  parser_limits limits_;
  std::deque<body_kind> expect_;
  std::string buf_;
  std::size_t pos_ = 0;
  state state_ = state::status;
  reply current_;
  bool line_start_ = true;  // message body: at the start of a line
  std::optional<parse_error> broken_;
};

// A short printable excerpt of server input for error details (control bytes escaped).
std::string excerpt(std::string_view s, std::size_t max = 60);

} // namespace mscan::pop3
