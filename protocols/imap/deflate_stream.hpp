#pragma once
// COMPRESS=DEFLATE (RFC 4978) as a sans-I/O layer between the transport and scan_session:
// raw deflate (no zlib header) both ways, each write flushed with Z_SYNC_FLUSH so the server
// sees whole commands. Bytes in, bytes out; no socket, no thread.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mscan::imap {

class deflate_stream {
 public:
  deflate_stream();
  ~deflate_stream();
  deflate_stream(const deflate_stream&) = delete;
  deflate_stream& operator=(const deflate_stream&) = delete;

  // Server bytes in; the inflated bytes go to `sink` in pieces of at most `chunk` bytes, so a
  // small input that inflates hugely never sits in memory at once (the parser's limits then
  // apply). False on a corrupt stream (error() says why); the stream is then unusable.
  bool inflate(std::string_view in, const std::function<void(std::string_view)>& sink,
               std::size_t chunk = 64 * 1024);
  // Client bytes in, what to send out.
  std::string deflate(std::string_view in);
  const std::string& error() const { return error_; }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::string error_;
};

} // namespace mscan::imap
