// libFuzzer target for scan_session: the input is the server's side of a conversation.
// Byte 0 picks options, byte 1 the chunk size (low 6 bits), the fetch strategy (bit 6:
// whole_message, else BODYSTRUCTURE + text parts) and whether every delivered message is
// passed to mark_seen() and to a move and a delete (queue_action, read_write) before resume()
// (bit 7). Byte 2: IDLE after the scan (bit 0), no ID (bit 1), and what stop_idle() asks for
// at the first idle_activity (bits 2-3: rescan, refresh, logout, never); checkpoints for every
// folder (bit 4, STATUS / LIST-STATUS paths).
// Checked: no crash, exactly one terminal
// output (scan_complete or scan_failed) and nothing after it, finished() after EOF, and
// the secret never appears in an error detail.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocols/imap/scan_session.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  using namespace mscan::imap;
  session_options o;
  o.username = "fuzz";
  o.secret = "Secret-Pass-123";
  o.auth = (data[0] & 1) ? auth_method::xoauth2 : auth_method::password;
  o.starttls = (data[0] & 2) != 0;
  o.unread_only = (data[0] & 4) != 0;
  if (data[0] & 8) o.folders = {"INBOX", "Arch\xc3\xa4v"};
  if (data[0] & 16) o.checkpoints["INBOX"] = {5, 7, 0};
  o.since_unix = (data[0] & 32) ? 1795996800 : 0;
  o.batch_size = (data[0] >> 6) + 1;
  o.max_message_bytes = 64;
  const std::size_t chunk = std::size_t{data[1]} % 64 + 1;
  o.fetch = (data[1] & 64) ? fetch_strategy::whole_message : fetch_strategy::structure;
  const bool mark = (data[1] & 128) != 0;
  o.read_write = mark;
  o.idle = (data[2] & 1) != 0;
  o.send_id = (data[2] & 2) == 0;
  o.fetch_text = (data[2] & 32) == 0;  // the header path: no text-part FETCH
  const int stop = (data[2] >> 2) & 3;
  if (data[2] & 16) {
    o.checkpoints["INBOX"] = {5, 7, 9};
    o.checkpoints["Arch\xc3\xa4v"] = {6, 0, 0};
    o.checkpoints["Sent"] = {1, 3, 4};
  }
  std::vector<std::uint32_t> delivered;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 3, size - 3);
  scan_session s(o);
  int terminal = 0;
  auto drain = [&] {
    while (auto out = s.poll()) {
      if (terminal) std::abort();  // output after the end
      if (std::holds_alternative<start_tls>(*out)) s.on_tls_established();
      if (auto* f = std::get_if<scan_failed>(&*out)) {
        ++terminal;
        if (f->err.detail.find(o.secret) != std::string::npos) std::abort();
      }
      if (std::holds_alternative<scan_complete>(*out)) ++terminal;
      if (auto* a = std::get_if<action_done>(&*out); a && a->id != 1 && a->id != 2) std::abort();
      if (std::holds_alternative<idle_activity>(*out) && stop < 3)
        s.stop_idle(static_cast<idle_stop>(stop));
      if (auto* m = std::get_if<message_fetched>(&*out)) {
        delivered.push_back(m->uid);
        // The synthetic message holds the header and texts it was built from, never more
        // than the caps allow (a header is not capped: bounded by the parser's limits).
        if (m->raw.size() > (std::size_t{64} << 20)) std::abort();
      }
    }
    if (s.awaiting_resume()) {
      if (mark) {
        s.mark_seen(delivered);
        s.queue_action({1, action_kind::move, delivered, "Done/\xc3\x84rger"});
        s.queue_action({2, action_kind::remove, delivered, {}});
      }
      s.resume();
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
