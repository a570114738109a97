#pragma once
// Resumable IMAP response parser (sans-I/O), after Dovecot's imap-parser and isync's drv_imap.
//
// Two stages, so that any chunking of the input (down to one byte at a time) gives the same
// result without re-scanning:
//   framing  — collects one complete response: its text lines (CRLF kept) go into one reused
//              buffer; each literal body ({n}, {n+}, ~{n}) is copied once, straight from the
//              input into its own string, sized from the announcement only after the limit check;
//   parsing  — a recursive-descent pass over the complete response builds a flat, reused node
//              arena and turns it into one typed `response`.
// Limits are settings; breaking one is a protocol error carrying the offending bytes
// (truncated). After an error the parser stays failed: the stream cannot be resynchronised.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/imap/response.hpp"

namespace mscan::imap {

struct parser_limits {
  std::size_t max_line_length = 64 * 1024;          // one text line (between literals)
  std::size_t max_literal_size = 64 * 1024 * 1024;  // one literal
  std::size_t max_response_size = 128 * 1024 * 1024; // text + literals of one response
  std::size_t max_depth = 32;                       // parenthesis nesting
  std::size_t max_items = 100000;                   // values in one response
};

struct parse_error {
  std::string message;   // what is wrong
  std::string excerpt;   // the offending bytes, truncated, non-printables escaped
};

enum class feed_status { need_more, ready, failed };

struct feed_result {
  std::size_t consumed = 0;   // bytes of the input taken (all of them unless ready/failed)
  feed_status status = feed_status::need_more;
};

class response_parser {
 public:
  explicit response_parser(parser_limits limits = {});

  // Takes bytes up to the end of the next complete response. On `ready`, the response is
  // available from take() and the caller feeds the rest of its input (consumed tells where).
  feed_result feed(std::string_view bytes);

  // The response completed by the last feed() that returned ready (moved out).
  response take();

  bool failed() const noexcept { return failed_; }
  const parse_error& error() const noexcept { return error_; }
  // True when no partial response is buffered (a clean boundary for EOF / STARTTLS).
  bool at_boundary() const noexcept;

  const parser_limits& limits() const noexcept { return limits_; }
  void set_limits(const parser_limits& l) { limits_ = l; }

  // Truncated, printable rendering of raw bytes for error messages.
  static std::string excerpt(std::string_view bytes, std::size_t max = 120);

 private:
  struct node {
    enum class kind : std::uint8_t { nil, atom, quoted, literal, list } type;
    bool escaped = false;      // quoted string contains backslash escapes
    std::uint32_t offset = 0;  // atom/quoted: into text_; literal: index into literals_
    std::uint32_t length = 0;  // atom/quoted: byte count; list: number of direct children
    std::uint32_t end = 0;     // index one past this node's last descendant
  };
  class cursor;

  feed_result fail(std::string message, std::string_view bytes, std::size_t consumed);
  bool end_of_line();  // after a complete text line: literal announced or response complete
  bool parse_response();
  bool parse_status(cursor& c, status_response& out);
  bool parse_code(std::string_view raw, response_code& out);
  bool parse_values(cursor& c, std::size_t depth_base);
  bool parse_untagged(cursor& c, response& out);
  bool parse_fetch(std::uint32_t seq, std::size_t first, fetch_data& out);
  std::string node_string(std::size_t i);          // atom/quoted/literal content
  std::string take_node_string(std::size_t i);     // moves a literal out instead of copying
  std::string_view node_view(std::size_t i) const; // atom/quoted raw (not for literals)
  sexp to_sexp(std::size_t i);
  bool node_number(std::size_t i, std::uint64_t& out) const;
  std::vector<std::string> node_atoms(std::size_t list) ;

  parser_limits limits_;
  enum class state { text, literal, ready } state_ = state::text;
  std::string text_;                 // all text lines of the current response, CRLF kept
  std::size_t line_start_ = 0;       // start of the current line within text_
  std::vector<std::string> literals_;
  std::size_t literal_remaining_ = 0;
  std::size_t response_size_ = 0;
  std::vector<node> nodes_;
  std::vector<std::size_t> open_lists_;  // parse_values' stack of open '(' nodes
  std::size_t next_literal_ = 0;     // during parsing: next literal to hand out
  response current_;
  bool failed_ = false;
  parse_error error_;
};

} // namespace mscan::imap
