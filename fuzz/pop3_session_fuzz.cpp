// libFuzzer target for the POP3 reply parser and scan session: the input is the server's
// side of a conversation. Byte 0 picks options, byte 1 the chunk size. Checked: no crash,
// exactly one terminal output (scan_complete or scan_failed) and nothing after it,
// finished() after EOF, the secret never in an error detail, and every kept message within
// the cap.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocols/pop3/scan_session.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  using namespace mscan;
  pop3::session_options o;
  o.username = "fuzz";
  o.secret = "Secret-Pass-123";
  o.auth = static_cast<pop3::auth_method>(data[0] % 5);
  o.starttls = (data[0] & 8) != 0;
  if (data[0] & 16) o.known = {{"A", 3}, {"B", 4}};
  o.last_uid = (data[0] & 16) ? 4 : 0;
  o.headers_only = (data[0] & 32) != 0;
  o.probe = (data[0] & 64) != 0;
  o.batch_size = (data[0] & 128) ? 1 : 3;
  o.max_message_bytes = 64;
  o.limits.max_line = 128;
  o.limits.max_lines = 64;
  const std::size_t chunk = std::size_t{data[1]} % 64 + 1;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);
  pop3::scan_session s(o);
  int terminal = 0;
  auto drain = [&] {
    while (auto out = s.poll()) {
      if (terminal) std::abort();  // output after the end
      if (std::holds_alternative<imap::start_tls>(*out)) s.on_tls_established();
      if (auto* f = std::get_if<imap::scan_failed>(&*out)) {
        ++terminal;
        if (f->err.detail.find(o.secret) != std::string::npos) std::abort();
      }
      if (std::holds_alternative<imap::scan_complete>(*out)) ++terminal;
      if (auto* m = std::get_if<imap::message_fetched>(&*out))
        if (m->raw.size() > o.max_message_bytes) std::abort();
      if (std::holds_alternative<imap::batch_complete>(*out) || std::holds_alternative<imap::folder_complete>(*out))
        (void)s.take_uidl_changes();
    }
    if (s.awaiting_resume()) {
      s.resume();
      if (data[1] & 64) s.dele({1, 2, 5, 6});
      s.all_acked();
    }
  };
  for (std::size_t pos = 0; pos < bytes.size(); pos += chunk) {
    s.on_bytes(bytes.substr(pos, std::min(chunk, bytes.size() - pos)));
    drain();
    drain();
  }
  s.on_eof();
  drain();
  if (!s.finished() || terminal != 1) std::abort();
  return 0;
}
