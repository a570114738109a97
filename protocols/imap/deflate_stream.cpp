#include "protocols/imap/deflate_stream.hpp"

#include <zlib.h>

#include <fmt/format.h>

namespace mscan::imap {

struct deflate_stream::impl {
  z_stream in{};
  z_stream out{};
  bool in_ok = false, out_ok = false;
  std::string buf;
};

deflate_stream::deflate_stream() : impl_(std::make_unique<impl>()) {
  // windowBits -15: raw deflate, as RFC 4978 requires.
  impl_->in_ok = inflateInit2(&impl_->in, -15) == Z_OK;
  impl_->out_ok = deflateInit2(&impl_->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  if (!impl_->in_ok || !impl_->out_ok) error_ = "zlib could not be initialised";
}

deflate_stream::~deflate_stream() {
  if (impl_->in_ok) inflateEnd(&impl_->in);
  if (impl_->out_ok) deflateEnd(&impl_->out);
}

bool deflate_stream::inflate(std::string_view in, const std::function<void(std::string_view)>& sink,
                             std::size_t chunk) {
  if (!error_.empty()) return false;
  auto& z = impl_->in;
  impl_->buf.resize(chunk);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  do {
    z.next_out = reinterpret_cast<Bytef*>(impl_->buf.data());
    z.avail_out = static_cast<uInt>(chunk);
    const int rc = ::inflate(&z, Z_SYNC_FLUSH);
    if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
      error_ = fmt::format("compressed stream is corrupt: {}", z.msg ? z.msg : "inflate failed");
      return false;
    }
    const std::size_t produced = chunk - z.avail_out;
    if (produced > 0) sink(std::string_view(impl_->buf.data(), produced));
    if (rc == Z_STREAM_END) {
      if (z.avail_in > 0) {
        error_ = "data after the end of the compressed stream";
        return false;
      }
      break;
    }
    if (produced == 0 && rc == Z_BUF_ERROR) break;  // needs more input
  } while (z.avail_in > 0 || z.avail_out == 0);
  return true;
}

std::string deflate_stream::deflate(std::string_view in) {
  std::string out;
  if (!error_.empty()) return out;
  auto& z = impl_->out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char buf[16384];
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    ::deflate(&z, Z_SYNC_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  } while (z.avail_out == 0);
  return out;
}

} // namespace mscan::imap
