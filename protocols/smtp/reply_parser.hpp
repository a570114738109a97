#pragma once
// SMTP reply parser (RFC 5321 4.2): bytes in, whole replies out. A reply is one or more lines
// "ddd-text" ending with a line "ddd text" (or "ddd"); every line must carry the same code.
// Resumable at any byte; it never reads a socket. Limits are the parser's: an over-long line
// or a reply with too many lines is an error, not an allocation.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mscan::smtp {

struct reply {
  int code = 0;                     // 200..599
  std::vector<std::string> lines;   // text after "ddd-" / "ddd " of each line, CRLF removed
  // Enhanced status code of the last line (RFC 3463, "5.7.8"), empty when absent.
  std::string enhanced;
  std::string text() const;         // lines joined with " | ", for error details
  bool positive() const { return code >= 200 && code < 400; }
};

struct reply_limits {
  std::size_t max_line_length = 4096;  // RFC 5321 says 512; servers overshoot in texts
  std::size_t max_lines = 256;         // an EHLO answer has a few dozen at most
};

class reply_parser {
 public:
  explicit reply_parser(reply_limits limits = {}) : limits_(limits) {}
  // Consumes bytes until one reply is complete (then returns how many bytes it took and the
  // reply is available from take()), or all bytes are used. On malformed input failed() turns
  // true and stays so.
  std::size_t feed(std::string_view bytes);
  bool ready() const { return ready_; }
  reply take();
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  bool at_boundary() const { return line_.empty() && current_.lines.empty() && !ready_; }

 private:
  void finish_line();
  reply_limits limits_;
  std::string line_;
  reply current_;
  bool ready_ = false;
  std::string error_;
};

// A short printable excerpt of hostile bytes for error texts.
std::string excerpt(std::string_view bytes, std::size_t max = 60);

} // namespace mscan::smtp
