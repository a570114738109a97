// libFuzzer target for smtp_session: the input is the server's side of a conversation.
// Byte 0 picks options (auth mechanism, STARTTLS, two messages), byte 1 the chunk size.
// Checked: no crash, exactly one terminal output (session_done or session_failed) and
// nothing after it, every message reported at most once, finished() after EOF, and the
// secret never appears in an error detail.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "protocols/smtp/smtp_session.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  using namespace mscan::smtp;
  session_options o;
  o.username = "fuzz";
  o.secret = "Secret-Pass-123";
  o.auth = (data[0] & 3) == 0 ? auth_mechanism::none : (data[0] & 3) == 1 ? auth_mechanism::xoauth2
                                                                             : auth_mechanism::password;
  o.starttls = (data[0] & 4) != 0;
  o.max_line_length = 200;
  std::vector<envelope> msgs{{"a@b.example", {"c@d.example", "e@f.example"}, "Subject: x\r\n\r\n.dot\r\n"}};
  if (data[0] & 8) msgs.push_back({"a@b.example", {"c@d.example"}, "y"});
  std::vector<int> reported(msgs.size(), 0);
  const std::size_t chunk = std::size_t{data[1]} % 64 + 1;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);
  smtp_session s(o, msgs);
  int terminal = 0;
  auto drain = [&] {
    while (auto out = s.poll()) {
      if (terminal) std::abort();  // output after the end
      if (std::holds_alternative<start_tls>(*out)) s.on_tls_established();
      if (auto* m = std::get_if<message_sent>(&*out)) {
        if (m->index >= msgs.size() || reported[m->index]++) std::abort();
      }
      if (auto* m = std::get_if<message_failed>(&*out)) {
        if (m->index >= msgs.size() || reported[m->index]++) std::abort();
        if (m->err.detail.find(o.secret) != std::string::npos) std::abort();
      }
      if (auto* f = std::get_if<session_failed>(&*out)) {
        ++terminal;
        if (f->err.detail.find(o.secret) != std::string::npos) std::abort();
      }
      if (std::holds_alternative<session_done>(*out)) ++terminal;
    }
  };
  for (std::size_t i = 0; i < bytes.size(); i += chunk) {
    s.on_bytes(bytes.substr(i, chunk));
    drain();
  }
  s.on_eof();
  drain();
  if (!s.finished() || terminal != 1) std::abort();
  return 0;
}
