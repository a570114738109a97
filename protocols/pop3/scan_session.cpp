#include "protocols/pop3/scan_session.hpp"
#include "common/text.hpp"

#include <algorithm>
#include <charconv>
#include <unordered_set>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "protocols/imap/command_writer.hpp"

namespace mscan::pop3 {

using imap::error_kind;

namespace {


std::string_view first_word(std::string_view s) { return s.substr(0, s.find(' ')); }

bool parse_number(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

// "n rest": message number and the rest of the line.
bool split_listing(std::string_view line, std::uint64_t& n, std::string_view& rest) {
  auto sp = line.find(' ');
  if (sp == std::string_view::npos || !parse_number(line.substr(0, sp), n) || n == 0 || n > UINT32_MAX)
    return false;
  rest = line.substr(sp + 1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  return true;
}

// RFC 1939: 1 to 70 characters in 0x21..0x7E.
bool valid_uidl(std::string_view u) {
  if (u.empty() || u.size() > 70) return false;
  return std::all_of(u.begin(), u.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

bool has_line_break(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

} // namespace

std::string apop_digest(std::string_view timestamp, std::string_view secret) {
  std::string input(timestamp);
  input += secret;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), md, &len, EVP_md5(), nullptr);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

scan_session::scan_session(session_options opts)
  : opts_(std::move(opts)), parser_([&] {
      auto l = opts_.limits;
      l.max_message_bytes = opts_.max_message_bytes;
      return l;
    }()) {
  if (opts_.batch_size == 0) opts_.batch_size = 1;
  highest_uid_ = opts_.last_uid;
}

void scan_session::send(std::string line, cmd kind, body_kind body, std::size_t index) {
  parser_.expect(body);
  pending_.push_back({kind, index});
  line += "\r\n";
  out_.push_back(imap::write_bytes{std::move(line)});
}

void scan_session::on_bytes(std::string_view bytes) {
  if (phase_ == phase::done) return;
  parser_.feed(bytes);
  process();
}

void scan_session::process() {
  while (phase_ != phase::done) {
    auto r = parser_.next();
    if (!r) return;
    if (auto* e = std::get_if<parse_error>(&*r)) {
      fail(error_kind::protocol_error, "unparseable server reply: " + e->detail);
      return;
    }
    handle(std::get<reply>(*r));
  }
}

void scan_session::on_tls_established() {
  if (phase_ != phase::tls_handshake) return;
  tls_done_ = true;
  // RFC 2595: what was learnt before TLS is forgotten.
  caps_.clear();
  capa_known_ = false;
  phase_ = phase::capa;
  send("CAPA", cmd::capa, body_kind::listing);
  process();
}

void scan_session::on_eof() {
  if (phase_ == phase::done) return;
  if (phase_ == phase::quit) {
    phase_ = phase::done;
    return;
  }
  fail(error_kind::server_bye, phase_ == phase::fetch ? "the server closed the connection in the middle of a message"
                                                      : "the server closed the connection");
}

std::optional<imap::session_output> scan_session::poll() {
  if (out_.empty()) return std::nullopt;
  auto o = std::move(out_.front());
  out_.pop_front();
  return o;
}

std::vector<uidl_change> scan_session::take_uidl_changes() { return std::exchange(changes_, {}); }

bool scan_session::has_cap(std::string_view name) const {
  return std::any_of(caps_.begin(), caps_.end(), [&](const std::string& c) { return ascii_upper(first_word(c)) == name; });
}

bool scan_session::sasl_offers(std::string_view mech) const {
  for (auto& c : caps_) {
    auto u = ascii_upper(c);
    if (first_word(u) != "SASL") continue;
    std::string_view rest(u);
    while (!rest.empty()) {
      auto sp = rest.find(' ');
      if (rest.substr(0, sp) == mech) return true;
      if (sp == std::string_view::npos) break;
      rest.remove_prefix(sp + 1);
    }
  }
  return false;
}

void scan_session::fail(error_kind kind, std::string detail) {
  if (phase_ == phase::done) return;
  if (phase_ == phase::quit) {  // scan_complete is out: whatever the server says now changes nothing
    phase_ = phase::done;
    return;
  }
  // A hostile or broken server may echo what we sent (PASS): it never reaches a detail.
  if (opts_.secret.size() >= 3)
    for (auto p = detail.find(opts_.secret); p != std::string::npos; p = detail.find(opts_.secret, p))
      detail.replace(p, opts_.secret.size(), "[redacted]");
  phase_ = phase::done;
  out_.push_back(imap::scan_failed{{kind, std::move(detail), 0}});
}

// RFC 2449 / 3206 response codes decide what an -ERR means to the operator.
void scan_session::fail_err(const reply& r, std::string_view what, error_kind fallback) {
  auto detail = fmt::format("{}: -ERR {}{}", what, r.code.empty() ? "" : "[" + r.code + "] ", excerpt(r.text, 200));
  if (r.code == "IN-USE")
    return fail(error_kind::account_unavailable, detail + " (the maildrop is locked by another session)");
  if (r.code == "LOGIN-DELAY")
    return fail(error_kind::throttled, detail);
  if (r.code.starts_with("SYS/"))
    return fail(error_kind::account_unavailable, detail);
  if (r.code == "AUTH")
    return fail(error_kind::login_failed, detail);
  fail(fallback, detail);
}

void scan_session::handle(reply& r) {
  if (r.kind == reply_kind::continuation) {
    // A SASL challenge: XOAUTH2 sends its error JSON this way; the empty answer ends the
    // exchange and the final -ERR follows. Anything else has no business sending "+ ".
    if (!pending_.empty() && pending_.front().kind == cmd::auth) {
      out_.push_back(imap::write_bytes{"\r\n"});
      return;
    }
    return fail(error_kind::protocol_error, "unexpected SASL challenge from the server");
  }
  if (phase_ == phase::greeting) {
    if (r.kind != reply_kind::ok) return fail_err(r, "the server refused the connection", error_kind::server_bye);
    auto lt = r.text.find('<');
    auto gt = lt == std::string::npos ? std::string::npos : r.text.find('>', lt);
    if (gt != std::string::npos) apop_timestamp_ = r.text.substr(lt, gt - lt + 1);
    phase_ = phase::capa;
    send("CAPA", cmd::capa, body_kind::listing);
    return;
  }
  if (pending_.empty()) return fail(error_kind::protocol_error, "a reply to no command");
  auto c = pending_.front();
  pending_.pop_front();
  const bool ok = r.kind == reply_kind::ok;
  switch (c.kind) {
    case cmd::capa:
      capa_known_ = ok;
      if (ok) caps_ = std::move(r.lines);
      pipelining_ = has_cap("PIPELINING");
      return after_capa();
    case cmd::stls:
      if (!ok) return fail(error_kind::starttls_unavailable, "the server refused STLS: " + excerpt(r.text, 200));
      phase_ = phase::tls_handshake;
      out_.push_back(imap::start_tls{});
      return;
    case cmd::user:
      if (!ok) return fail_err(r, "USER refused", error_kind::login_failed);
      send("PASS " + opts_.secret, cmd::pass, body_kind::none);
      return;
    case cmd::pass:
    case cmd::apop:
    case cmd::auth:
      if (!ok) return fail_err(r, "login refused", error_kind::login_failed);
      return logged_in();
    case cmd::auth_cancel:
      return;
    case cmd::stat: {
      if (!ok) return fail_err(r, "STAT refused", error_kind::protocol_error);
      std::uint64_t n = 0;
      if (!parse_number(first_word(r.text), n) || n > UINT32_MAX)
        return fail(error_kind::protocol_error, "STAT: unparseable reply '" + excerpt(r.text) + "'");
      out_.push_back(imap::folder_opened{std::string(folder_name), 0, 0, static_cast<std::uint32_t>(n), false, {}, {}});
      return finish();
    }
    case cmd::uidl:
      if (!ok)
        return fail_err(r, "UIDL refused (incremental POP3 scanning needs UIDL, RFC 1939)", error_kind::protocol_error);
      return on_uidl(r);
    case cmd::list:
      if (!ok) return fail_err(r, "LIST refused", error_kind::protocol_error);
      return on_list(r);
    case cmd::fetch:
      return on_fetched(r, c.index);
    case cmd::dele:
      if (!ok)
        out_.push_back(imap::session_warning{std::string(folder_name),
                                             fmt::format("DELE refused: -ERR {}", excerpt(r.text, 200))});
      if (!pipelining_) next_dele();
      return;
    case cmd::quit:
      phase_ = phase::done;
      return;
  }
}

void scan_session::after_capa() {
  if (opts_.starttls && !tls_done_) {
    // No downgrade: a server that does not list STLS is not asked in clear for anything else.
    if (capa_known_ && !has_cap("STLS"))
      return fail(error_kind::starttls_unavailable, "the server does not offer STLS (RFC 2595)");
    phase_ = phase::stls;
    send("STLS", cmd::stls, body_kind::none);
    return;
  }
  authenticate();
}

void scan_session::authenticate() {
  phase_ = phase::auth;
  if (has_line_break(opts_.username) || has_line_break(opts_.secret))
    return fail(error_kind::login_failed, "the username or secret contains a line break");
  auto method = opts_.auth;
  if (method == auth_method::automatic) {
    if (sasl_offers("PLAIN"))
      method = auth_method::sasl_plain;
    else if (!capa_known_ || has_cap("USER") || apop_timestamp_.empty())
      method = auth_method::user_pass;
    else
      method = auth_method::apop;
  }
  switch (method) {
    case auth_method::sasl_plain:
      send("AUTH PLAIN " + imap::sasl_plain(opts_.username, opts_.secret), cmd::auth, body_kind::none);
      return;
    case auth_method::xoauth2:
      if (capa_known_ && !sasl_offers("XOAUTH2"))
        return fail(error_kind::auth_method_unsupported, "the server does not offer SASL XOAUTH2");
      send("AUTH XOAUTH2 " + imap::sasl_xoauth2(opts_.username, opts_.secret), cmd::auth, body_kind::none);
      return;
    case auth_method::apop:
      if (apop_timestamp_.empty())
        return fail(error_kind::auth_method_unsupported, "the server's greeting has no APOP timestamp");
      send("APOP " + opts_.username + " " + apop_digest(apop_timestamp_, opts_.secret), cmd::apop, body_kind::none);
      return;
    case auth_method::user_pass:
    case auth_method::automatic:
      send("USER " + opts_.username, cmd::user, body_kind::none);
      return;
  }
}

void scan_session::logged_in() {
  if (opts_.probe) {
    phase_ = phase::stat;
    send("STAT", cmd::stat, body_kind::none);
    return;
  }
  phase_ = phase::uidl;
  send("UIDL", cmd::uidl, body_kind::listing);
}

void scan_session::on_uidl(const reply& r) {
  std::unordered_set<std::string_view> on_server;
  on_server.reserve(r.lines.size());
  std::uint32_t uid = opts_.last_uid;
  for (auto& line : r.lines) {
    std::uint64_t n = 0;
    std::string_view u;
    if (!split_listing(line, n, u) || !valid_uidl(u))
      return fail(error_kind::protocol_error, "UIDL: unparseable line '" + excerpt(line) + "'");
    if (!on_server.insert(u).second) {
      out_.push_back(imap::session_warning{std::string(folder_name),
                                           "UIDL: '" + excerpt(u) + "' listed twice; the second copy is skipped"});
      continue;
    }
    if (opts_.known.count(u)) continue;
    if (uid == UINT32_MAX) return fail(error_kind::protocol_error, "UIDL: more messages than uids");
    new_.push_back({static_cast<std::uint32_t>(n), std::string(u), ++uid});
    msgno_of_[uid] = static_cast<std::uint32_t>(n);
  }
  // Vanished UIDLs leave the checkpoint (the set would otherwise only grow).
  for (auto& [u, id] : opts_.known)
    if (!on_server.count(u)) changes_.push_back({u, id, true});
  out_.push_back(imap::folder_opened{std::string(folder_name), 0, uid + 1, static_cast<std::uint32_t>(r.lines.size()),
                                     false, {}, {}});
  if (new_.empty()) return finish();
  phase_ = phase::list;
  send("LIST", cmd::list, body_kind::listing);
}

void scan_session::on_list(const reply& r) {
  std::map<std::uint64_t, std::uint64_t> sizes;
  for (auto& line : r.lines) {
    std::uint64_t n = 0, size = 0;
    std::string_view rest;
    if (!split_listing(line, n, rest) || !parse_number(first_word(rest), size))
      return fail(error_kind::protocol_error, "LIST: unparseable line '" + excerpt(line) + "'");
    sizes[n] = size;
  }
  for (auto& m : new_) {
    if (auto it = sizes.find(m.msgno); it != sizes.end()) m.size = it->second;
    m.partial = opts_.headers_only || m.size > opts_.max_message_bytes;
  }
  next_batch();
}

void scan_session::next_batch() {
  phase_ = phase::fetch;
  batch_begin_ = batch_end_;
  batch_end_ = std::min(new_.size(), batch_begin_ + opts_.batch_size);
  replies_left_ = batch_end_ - batch_begin_;
  next_send_ = batch_begin_;
  // Without PIPELINING (RFC 2449) one command at a time; with it, the whole batch at once.
  do
    send_fetch(next_send_++);
  while (pipelining_ && next_send_ < batch_end_);
}

void scan_session::send_fetch(std::size_t index) {
  auto& m = new_[index];
  if (!m.partial || (capa_known_ && !has_cap("TOP"))) {
    send(fmt::format("RETR {}", m.msgno), cmd::fetch, body_kind::message, index);
    return;
  }
  // Header plus as many body lines as fit the cap at ~100 bytes a line.
  auto lines = opts_.headers_only ? 0 : std::max<std::size_t>(1, opts_.max_message_bytes / 100);
  send(fmt::format("TOP {} {}", m.msgno, lines), cmd::fetch, body_kind::message, index);
}

void scan_session::on_fetched(reply& r, std::size_t index) {
  auto& m = new_[index];
  if (r.kind != reply_kind::ok) {
    // Not tracked and not in the checkpoint: the next pass asks again.
    out_.push_back(imap::session_warning{
      std::string(folder_name), fmt::format("message {} (UIDL {}) could not be read: -ERR {}", m.msgno, m.uidl,
                                            excerpt(r.text, 200))});
  } else {
    imap::message_fetched f;
    f.folder = std::string(folder_name);
    f.uidvalidity = 0;
    f.uid = m.uid;
    f.size = m.size ? m.size : r.message.size();
    f.internaldate = 0;
    f.raw = std::move(r.message);
    // Headers-only is a choice, not a cut: only a body cut short by the cap is "truncated".
    f.truncated = r.truncated || (m.partial && !opts_.headers_only);
    out_.push_back(std::move(f));
    changes_.push_back({m.uidl, m.uid, false});
  }
  highest_uid_ = std::max(highest_uid_, m.uid);
  if (next_send_ < batch_end_) send_fetch(next_send_++);
  if (--replies_left_ > 0) return;
  if (batch_end_ == new_.size()) return finish();
  phase_ = phase::await_resume;
  out_.push_back(imap::batch_complete{std::string(folder_name), 0, highest_uid_});
}

void scan_session::resume() {
  if (phase_ != phase::await_resume) return;
  next_batch();
  process();
}

void scan_session::finish() {
  if (opts_.probe) return quit();
  out_.push_back(imap::folder_complete{std::string(folder_name), 0, highest_uid_, 0});
  phase_ = phase::await_final;
}

void scan_session::dele(const std::vector<std::uint32_t>& uids) {
  if (phase_ == phase::quit || phase_ == phase::done || phase_ == phase::dele) return;
  for (auto uid : uids)
    if (auto it = msgno_of_.find(uid); it != msgno_of_.end()) dele_.push_back(it->second);
}

void scan_session::all_acked() {
  if (phase_ != phase::await_final) return;
  phase_ = phase::dele;
  if (!pipelining_) {
    next_dele();
  } else {
    while (!dele_.empty()) {
      send(fmt::format("DELE {}", dele_.front()), cmd::dele, body_kind::none);
      dele_.pop_front();
    }
    quit();
  }
  process();
}

void scan_session::next_dele() {
  if (dele_.empty()) return quit();
  send(fmt::format("DELE {}", dele_.front()), cmd::dele, body_kind::none);
  dele_.pop_front();
}

void scan_session::quit() {
  phase_ = phase::quit;
  send("QUIT", cmd::quit, body_kind::none);
  out_.push_back(imap::scan_complete{});
}

} // namespace mscan::pop3
