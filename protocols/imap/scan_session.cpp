#include "protocols/imap/scan_session.hpp"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "protocols/imap/utf7.hpp"

namespace mscan::imap {

namespace {

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool icontains(std::string_view hay, std::string_view needle) {
  return lower_ascii(hay).find(lower_ascii(needle)) != std::string::npos;
}

// First decimal number after `after` in text (case-insensitive); 0 if none.
std::uint32_t number_after(std::string_view text, std::string_view after) {
  const std::string low = lower_ascii(text);
  std::size_t p = low.find(lower_ascii(after));
  if (p == std::string::npos) return 0;
  p += after.size();
  while (p < low.size() && (low[p] == ' ' || low[p] == ':' || low[p] == '=')) ++p;
  std::uint32_t n = 0;
  while (p < low.size() && low[p] >= '0' && low[p] <= '9' && n < 100000)
    n = n * 10 + static_cast<std::uint32_t>(low[p++] - '0');
  return n;
}

// "1:3,7,9:10" -> UIDs appended to out; false on syntax errors or more than cap entries.
bool expand_sequence_set(std::string_view set, std::vector<std::uint32_t>& out, std::size_t cap) {
  std::size_t i = 0;
  auto number = [&](std::uint32_t& v) {
    std::uint64_t n = 0;
    const std::size_t b = i;
    while (i < set.size() && set[i] >= '0' && set[i] <= '9' && n <= 0xffffffffu)
      n = n * 10 + static_cast<std::uint64_t>(set[i++] - '0');
    if (i == b || n == 0 || n > 0xffffffffu) return false;
    v = static_cast<std::uint32_t>(n);
    return true;
  };
  while (i < set.size()) {
    std::uint32_t a = 0, b = 0;
    if (!number(a)) return false;
    b = a;
    if (i < set.size() && set[i] == ':') {
      ++i;
      if (!number(b)) return false;
    }
    if (a > b) std::swap(a, b);
    if (std::uint64_t{b} - a + 1 > cap || out.size() + (std::uint64_t{b} - a + 1) > cap) return false;
    for (std::uint64_t u = a; u <= b; ++u) out.push_back(static_cast<std::uint32_t>(u));
    if (i < set.size() && set[i++] != ',') return false;
  }
  return true;
}

constexpr std::uint32_t default_backoff_s = 60;

// Office 365 style throttling is only visible in the text ("Server Unavailable. 15",
// "Request is throttled"); the number after "Server Unavailable." is a server error code,
// not seconds, so only explicit "retry after N" / "N seconds" texts set the back-off.
bool throttle_text(std::string_view text) {
  return icontains(text, "server unavailable") || icontains(text, "throttl") ||
         icontains(text, "too many");
}

std::uint32_t backoff_from_text(std::string_view text) {
  for (auto key : {"retry after", "try again in", "backoff", "back off", "wait"}) {
    const auto n = number_after(text, key);
    if (n > 0) return n;
  }
  return default_backoff_s;
}

} // namespace

std::string_view to_string(error_kind k) {
  switch (k) {
    case error_kind::dns_failure: return "dns_failure";
    case error_kind::connection_refused: return "connection_refused";
    case error_kind::timeout: return "timeout";
    case error_kind::tls_handshake_failed: return "tls_handshake_failed";
    case error_kind::certificate_invalid: return "certificate_invalid";
    case error_kind::starttls_unavailable: return "starttls_unavailable";
    case error_kind::login_failed: return "login_failed";
    case error_kind::auth_method_unsupported: return "auth_method_unsupported";
    case error_kind::account_unavailable: return "account_unavailable";
    case error_kind::folder_not_found: return "folder_not_found";
    case error_kind::server_bye: return "server_bye";
    case error_kind::protocol_error: return "protocol_error";
    case error_kind::throttled: return "throttled";
  }
  return "protocol_error";
}

scan_session::scan_session(session_options opts) : opts_(std::move(opts)) {
  if (opts_.batch_size == 0) opts_.batch_size = 1;
  // The largest literal we accept: a full message we asked for (at most max_message_bytes,
  // plus a message that grew past the limit between SEARCH and FETCH) or a header block.
  parser_limits l;
  l.max_literal_size = std::max<std::size_t>(8u << 20, opts_.max_message_bytes * 4);
  l.max_response_size = l.max_literal_size * 2 + (1u << 20);
  // A plain SEARCH answer is one line with one number per message: a 1M-message mailbox
  // needs ~8 MB and 1M values (servers without ESEARCH).
  l.max_line_length = 8u << 20;
  l.max_items = 1500000;
  parser_.set_limits(l);
  for (const auto& f : opts_.folders) folders_.push_back({f, {}, true, {}});
}

std::optional<session_output> scan_session::poll() {
  if (out_.empty()) return std::nullopt;
  auto o = std::move(out_.front());
  out_.pop_front();
  return o;
}

bool scan_session::authenticating() const { return phase_ == phase::authenticate; }

bool scan_session::awaiting_resume() const { return phase_ == phase::await_resume; }
bool scan_session::finished() const { return phase_ == phase::done; }
const std::vector<std::string>& scan_session::capabilities() const { return caps_; }

void scan_session::on_bytes(std::string_view bytes) {
  while (!bytes.empty() && phase_ != phase::done) {
    if (phase_ == phase::tls_handshake) {
      // Bytes after the STARTTLS OK and before the handshake would be plaintext injected
      // ahead of TLS (the classic STARTTLS command injection): refuse them.
      fail_protocol(fmt::format("data after STARTTLS response: {}", response_parser::excerpt(bytes)));
      return;
    }
    const auto r = parser_.feed(bytes);
    bytes.remove_prefix(r.consumed);
    if (r.status == feed_status::failed) {
      fail_protocol(fmt::format("{}: {}", parser_.error().message, parser_.error().excerpt));
      return;
    }
    if (r.status == feed_status::ready) {
      auto resp = parser_.take();
      handle(resp);
      if (std::exchange(compress_switch_, false)) {
        compressed_rest_.assign(bytes);
        return;
      }
    }
  }
}

void scan_session::on_tls_established() {
  if (phase_ != phase::tls_handshake) return;
  tls_done_ = true;
  caps_.clear();  // pre-TLS capabilities are not trusted
  phase_ = phase::capability;
  send(writer_.begin("CAPABILITY").finish(), cmd_kind::capability);
}

void scan_session::on_eof() {
  if (phase_ == phase::done) return;
  if (!parser_.at_boundary()) {
    fail(error_kind::protocol_error, "connection closed by the server in the middle of a response");
    return;
  }
  fail(error_kind::server_bye, "connection closed by the server without BYE");
}

void scan_session::resume() {
  if (phase_ != phase::await_resume) return;
  if (!actions_.empty()) {
    phase_ = phase::actions;
    start_next_action();
    return;
  }
  after_batch();
}

void scan_session::after_batch() {
  if (finish_early_ && batch_pos_ < uids_.size()) end_early();
  else if (batch_pos_ < uids_.size()) next_batch();
  else finish_folder();
}

void scan_session::finish_early() { finish_early_ = true; }
bool scan_session::ended_early() const { return ended_early_; }

void scan_session::end_early() {
  ended_early_ = true;
  logout();
}

void scan_session::mark_seen(std::vector<std::uint32_t> uids) {
  queue_action({0, action_kind::mark_read, std::move(uids), {}});
}

void scan_session::queue_action(action_request a) {
  const std::string folder = folder_index_ < folders_.size() ? folders_[folder_index_].name : "";
  // The folder stays selected from its first batch until the resume() after its last one;
  // actions given meanwhile wait for the next resume().
  std::string refused;
  if (phase_ != phase::await_resume && phase_ != phase::fetch && phase_ != phase::actions)
    refused = "no folder is being fetched";
  else if (!opts_.unread_only && !opts_.read_write)
    refused = "the folder is opened read-only (EXAMINE) unless scanning unread mail or running rule actions";
  if (!refused.empty()) {
    if (a.id == 0) out_.push_back(session_warning{folder, "mark_seen ignored: " + refused});
    else out_.push_back(action_done{a.id, a.kind, folder, a.target, std::move(a.uids), false, "not carried out: " + refused});
    return;
  }
  std::erase(a.uids, 0u);
  // Consecutive mark_seen()s (scan = unread, one per acknowledged batch) share one STORE.
  if (a.id == 0 && !actions_.empty() && actions_.back().id == 0 && actions_.back().kind == action_kind::mark_read) {
    auto& into = actions_.back().uids;
    into.insert(into.end(), a.uids.begin(), a.uids.end());
    a.uids = std::move(into);
    actions_.pop_back();
  }
  std::sort(a.uids.begin(), a.uids.end());
  a.uids.erase(std::unique(a.uids.begin(), a.uids.end()), a.uids.end());
  if (a.uids.empty()) {
    if (a.id != 0) out_.push_back(action_done{a.id, a.kind, folder, a.target, {}, true, "no messages"});
    return;
  }
  actions_.push_back(std::move(a));
}

void scan_session::start_next_action() {
  const std::string& folder = folders_[folder_index_].name;
  const bool uidplus = has_cap("UIDPLUS");
  const std::string no_uidplus =
      "left flagged \\Deleted, not expunged: the server lacks UIDPLUS (a plain EXPUNGE would also "
      "remove messages the user flagged \\Deleted)";
  while (!actions_.empty()) {
    running_action r;
    r.req = std::move(actions_.front());
    actions_.pop_front();
    switch (r.req.kind) {
      case action_kind::mark_read:
        r.steps = {action_step::store_seen};
        break;
      case action_kind::remove:
        r.steps = {action_step::store_deleted};
        if (uidplus) r.steps.push_back(action_step::expunge);
        else r.note = no_uidplus;
        break;
      case action_kind::move: {
        const bool same = r.req.target == folder || (iequals(r.req.target, "INBOX") && iequals(folder, "INBOX"));
        if (r.req.target.empty() || same) {
          // Moving a message into its own folder would give it a new UID, which the next
          // pass would fetch and move again, forever.
          out_.push_back(action_done{r.req.id, r.req.kind, folder, r.req.target, std::move(r.req.uids),
                                     !r.req.target.empty(),
                                     r.req.target.empty() ? "no destination folder" : "already in that folder"});
          continue;
        }
        if (has_cap("MOVE")) {
          r.steps = {action_step::move};
        } else {
          r.steps = {action_step::copy, action_step::store_deleted};
          if (uidplus) r.steps.push_back(action_step::expunge);
          else r.note = "copied; " + no_uidplus;
        }
        break;
      }
    }
    running_ = std::move(r);
    send_action_step();
    return;
  }
  running_.reset();
  after_batch();
}

void scan_session::send_action_step() {
  auto& r = *running_;
  const auto set = sequence_set(r.req.uids);
  switch (r.steps[r.next]) {
    case action_step::store_seen:
      send(writer_.begin("UID STORE").atom(set).atom("+FLAGS.SILENT (\\Seen)").finish(), cmd_kind::action);
      return;
    case action_step::store_deleted:
      send(writer_.begin("UID STORE").atom(set).atom("+FLAGS.SILENT (\\Deleted)").finish(), cmd_kind::action);
      return;
    case action_step::move:
      send(writer_.begin("UID MOVE").atom(set).mailbox(r.req.target).finish(), cmd_kind::action);
      return;
    case action_step::copy:
      send(writer_.begin("UID COPY").atom(set).mailbox(r.req.target).finish(), cmd_kind::action);
      return;
    case action_step::create:
      send(writer_.begin("CREATE").mailbox(r.req.target).finish(), cmd_kind::action);
      return;
    case action_step::expunge:
      send(writer_.begin("UID EXPUNGE").atom(set).finish(), cmd_kind::action);
      return;
  }
}

void scan_session::action_answered(const status_response& s) {
  if (!running_) return;
  auto& r = *running_;
  const auto step = r.steps[r.next];
  const bool ok = s.status == status_kind::ok;
  if (!ok && (step == action_step::move || step == action_step::copy) &&
      s.code.kind == code_kind::trycreate && !r.created) {
    r.created = true;
    r.steps.insert(r.steps.begin() + static_cast<std::ptrdiff_t>(r.next), action_step::create);
    send_action_step();
    return;
  }
  if (!ok && !(step == action_step::create && s.code.kind == code_kind::alreadyexists)) {
    static constexpr const char* names[] = {"UID STORE (\\Seen)", "UID STORE (\\Deleted)", "UID MOVE",
                                            "UID COPY", "CREATE", "UID EXPUNGE"};
    const std::string code = s.code.kind == code_kind::none ? "" : "[" + s.code.name + "] ";
    std::string done = r.next > 0 && r.steps[r.next - 1] != action_step::create ? "partly done; " : "";
    if (r.steps.front() == action_step::copy && r.next > 0) done = "copied, still in the source folder; ";
    finish_action(false, fmt::format("{}{} refused: {}{}", done, names[static_cast<int>(step)], code, s.text));
    return;
  }
  if (++r.next < r.steps.size()) {
    send_action_step();
    return;
  }
  const bool complete = r.note.empty();
  finish_action(complete, complete && r.created ? "folder created" : r.note);
}

void scan_session::finish_action(bool ok, std::string detail) {
  auto r = std::move(*running_);
  running_.reset();
  const std::string& folder = folders_[folder_index_].name;
  if (r.req.id == 0) {
    if (!ok) out_.push_back(session_warning{folder, fmt::format("marking messages \\Seen failed: {}", detail)});
  } else {
    out_.push_back(action_done{r.req.id, r.req.kind, folder, std::move(r.req.target), std::move(r.req.uids), ok,
                               std::move(detail)});
  }
  start_next_action();
}

void scan_session::send(command c, cmd_kind kind) {
  pending_.push_back({c.tag, kind});
  for (std::size_t i = 1; i < c.parts.size(); ++i) literal_parts_.push_back(std::move(c.parts[i]));
  out_.push_back(write_bytes{std::move(c.parts[0])});
}

void scan_session::fail(error_kind kind, std::string detail, std::uint32_t retry_after_s) {
  if (phase_ == phase::done) return;
  // Defence in depth: a server echoing our credentials (plain or as the SASL base64 we
  // sent) must not put them in an error.
  auto redact = [&](const std::string& secret) {
    if (secret.size() < 4) return;
    for (std::size_t p; (p = detail.find(secret)) != std::string::npos;)
      detail.replace(p, secret.size(), "***");
  };
  redact(opts_.secret);
  if (!opts_.secret.empty()) {
    redact(sasl_plain(opts_.username, opts_.secret));
    redact(sasl_xoauth2(opts_.username, opts_.secret));
  }
  phase_ = phase::done;
  out_.push_back(scan_failed{error{kind, std::move(detail), retry_after_s}});
}

void scan_session::fail_protocol(std::string_view what) {
  fail(error_kind::protocol_error, fmt::format("protocol error: {}", what));
}

bool scan_session::fail_if_throttled(const status_response& s) {
  const auto k = s.code.kind;
  if (k == code_kind::limit || k == code_kind::unavailable || k == code_kind::inuse ||
      k == code_kind::overquota || throttle_text(s.text)) {
    const auto secs = backoff_from_text(s.text);
    const std::string code = s.code.kind == code_kind::none ? "" : "[" + s.code.name + "] ";
    fail(error_kind::throttled,
         fmt::format("server is throttling: {}{}; retry after {} s", code, s.text, secs), secs);
    return true;
  }
  return false;
}

void scan_session::fail_login(const status_response& s) {
  const auto k = s.code.kind;
  const std::string code = k == code_kind::none ? "" : "[" + s.code.name + "] ";
  if (throttle_text(s.text) || k == code_kind::limit || k == code_kind::inuse ||
      k == code_kind::overquota) {
    fail_if_throttled(s);
    return;
  }
  if (k == code_kind::authenticationfailed) {
    fail(error_kind::login_failed, fmt::format("login rejected: {}{}", code, s.text));
    return;
  }
  if (k == code_kind::unavailable || k == code_kind::expired || k == code_kind::contactadmin ||
      k == code_kind::authorizationfailed || icontains(s.text, "disabled") ||
      icontains(s.text, "locked") || icontains(s.text, "suspended") ||
      icontains(s.text, "not connected")) {
    fail(error_kind::account_unavailable, fmt::format("account unavailable: {}{}", code, s.text));
    return;
  }
  fail(error_kind::login_failed, fmt::format("login rejected: {}{}", code, s.text));
}

void scan_session::set_capabilities(std::vector<std::string> caps) {
  caps_ = std::move(caps);
  writer_caps wc = writer_.caps();
  wc.literal_plus = has_cap("LITERAL+");
  wc.literal_minus = has_cap("LITERAL-");
  writer_.set_caps(wc);
}

bool scan_session::has_cap(std::string_view cap) const {
  for (const auto& c : caps_)
    if (iequals(c, cap)) return true;
  return false;
}

void scan_session::handle(response& r) {
  if (handle_ext(r)) return;
  if (auto* s = std::get_if<status_response>(&r)) {
    if (!s->tag.empty()) handle_tagged(*s);
    else handle_untagged_status(*s);
    return;
  }
  if (auto* k = std::get_if<continuation>(&r)) {
    if (!literal_parts_.empty()) {
      out_.push_back(write_bytes{std::move(literal_parts_.front())});
      literal_parts_.pop_front();
    } else if (phase_ == phase::authenticate && !auth_ir_sent_) {
      auth_ir_sent_ = true;
      const std::string ir = opts_.auth == auth_method::xoauth2
                                 ? sasl_xoauth2(opts_.username, opts_.secret)
                                 : sasl_plain(opts_.username, opts_.secret);
      out_.push_back(write_bytes{ir + "\r\n"});
    } else if (phase_ == phase::authenticate) {
      // XOAUTH2 failure: the server sends an error challenge and waits for an empty reply
      // before its tagged NO.
      out_.push_back(write_bytes{"\r\n"});
    } else {
      fail_protocol(fmt::format("unexpected continuation request: {}",
                                response_parser::excerpt(k->text)));
    }
    return;
  }
  if (phase_ == phase::greeting) {
    fail_protocol("server did not start with a greeting");
    return;
  }
  if (auto* c = std::get_if<capability_data>(&r)) {
    set_capabilities(std::move(c->capabilities));
  } else if (auto* l = std::get_if<list_data>(&r)) {
    if (phase_ != phase::list || l->lsub) return;
    if (l->has_flag("\\Noselect") || l->has_flag("\\NonExistent")) return;
    std::string name = l->mailbox;
    if (!utf8_)
      if (auto decoded = utf7_decode(l->mailbox)) name = std::move(*decoded);
    std::string special;
    for (const char* flag : {"\\Sent", "\\Trash", "\\Junk", "\\Drafts", "\\All", "\\Archive", "\\Flagged"})
      if (l->has_flag(flag)) {
        special = flag;
        break;
      }
    folders_.push_back({std::move(name), std::move(l->mailbox), false, std::move(special)});
  } else if (auto* e = std::get_if<exists_data>(&r)) {
    if (phase_ == phase::select) exists_ = e->count;
  } else if (auto* s = std::get_if<search_data>(&r)) {
    if (phase_ != phase::search) return;
    // Answers come in command order: the first pending search owns this result (a dropped
    // speculative one's is ignored).
    for (const auto& p : pending_) {
      if (p.kind == cmd_kind::discarded_search) break;
      if (p.kind == cmd_kind::search_all || p.kind == cmd_kind::search_large) {
        auto& into = p.kind == cmd_kind::search_all ? uids_ : large_uids_;
        into.insert(into.end(), s->ids.begin(), s->ids.end());
        break;
      }
    }
  } else if (auto* en = std::get_if<enabled_data>(&r)) {
    for (const auto& c : en->capabilities) {
      if (c == "UTF8=ACCEPT") {
        utf8_ = true;
        writer_caps wc = writer_.caps();
        wc.utf8_accept = true;
        writer_.set_caps(wc);
      }
    }
  } else if (auto* e = std::get_if<esearch_data>(&r)) {
    if (phase_ != phase::search) return;
    // ESEARCH names its command by tag; fall back to command order without one.
    for (const auto& p : pending_) {
      if (p.kind != cmd_kind::search_all && p.kind != cmd_kind::search_large &&
          p.kind != cmd_kind::discarded_search)
        continue;
      if (!e->tag.empty() && e->tag != p.tag) continue;
      if (p.kind == cmd_kind::discarded_search) break;
      auto& into = p.kind == cmd_kind::search_all ? uids_ : large_uids_;
      // A hostile "1:4294967295" must not become four billion UIDs: the answer can hold
      // no more messages than the mailbox (plus what arrived meanwhile).
      const std::size_t cap = std::size_t{exists_} + 100000;
      if (!expand_sequence_set(e->all, into, cap))
        fail_protocol(fmt::format("bad ESEARCH result: {}", response_parser::excerpt(e->all)));
      break;
    }
  } else if (auto* f = std::get_if<fetch_data>(&r)) {
    if (phase_ == phase::date_probe) {
      if (f->internaldate && !probe_date_) probe_date_ = parse_internaldate(*f->internaldate);
      return;
    }
    handle_fetch(*f);
  }
  // FLAGS, EXPUNGE, VANISHED, RECENT, STATUS, ...: nothing the scan depends on.
}

void scan_session::handle_untagged_status(const status_response& s) {
  if (s.code.kind == code_kind::capability) set_capabilities(s.code.list);
  switch (s.status) {
    case status_kind::bye:
      if (logout_sent_) return;
      if (fail_if_throttled(s)) return;
      fail(error_kind::server_bye, fmt::format("server said BYE: {}", s.text));
      return;
    case status_kind::preauth:
      if (phase_ != phase::greeting) {
        fail_protocol("PREAUTH after the greeting");
        return;
      }
      if (opts_.starttls) {
        fail(error_kind::starttls_unavailable,
             "server pre-authenticated the connection; STARTTLS is not possible");
        return;
      }
      authenticated();
      return;
    case status_kind::ok:
      if (phase_ == phase::greeting) {
        after_capabilities();
        return;
      }
      if (phase_ == phase::select) {
        if (s.code.kind == code_kind::uidvalidity) uidvalidity_ = static_cast<std::uint32_t>(s.code.number);
        else if (s.code.kind == code_kind::uidnext) uidnext_ = static_cast<std::uint32_t>(s.code.number);
        else if (s.code.kind == code_kind::highestmodseq) highest_modseq_ = s.code.number;
        else if (s.code.kind == code_kind::other && s.code.name == "MAILBOXID") {
          // "(F2212ea87-6097-4256-9d51-71338625)": an objectid is 1-255 letters, digits, - _
          mailbox_id_.clear();
          for (char c : s.code.arguments)
            if (((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_') && mailbox_id_.size() < 255)
              mailbox_id_ += c;
        }
      }
      return;
    case status_kind::no:
    case status_kind::bad:
      if (phase_ == phase::greeting) fail_protocol(fmt::format("greeting was {}", s.text));
      return;  // warnings
  }
}

void scan_session::after_capabilities() {
  if (caps_.empty()) {
    phase_ = phase::capability;
    send(writer_.begin("CAPABILITY").finish(), cmd_kind::capability);
    return;
  }
  if (opts_.starttls && !tls_done_) {
    if (!has_cap("STARTTLS")) {
      fail(error_kind::starttls_unavailable, "server does not offer STARTTLS");
      return;
    }
    phase_ = phase::starttls;
    send(writer_.begin("STARTTLS").finish(), cmd_kind::starttls);
    return;
  }
  authenticate();
}

void scan_session::authenticate() {
  phase_ = phase::authenticate;
  auth_ir_sent_ = false;
  send_id();
  const bool sasl_ir = has_cap("SASL-IR");
  if (opts_.auth == auth_method::xoauth2) {
    if (!has_cap("AUTH=XOAUTH2")) {
      fail(error_kind::auth_method_unsupported, "server does not offer AUTH=XOAUTH2");
      return;
    }
    auto b = writer_.begin("AUTHENTICATE").atom("XOAUTH2");
    if (sasl_ir) {
      b.atom(sasl_xoauth2(opts_.username, opts_.secret));
      auth_ir_sent_ = true;
    }
    send(b.finish(), cmd_kind::authenticate);
    return;
  }
  if (has_cap("LOGINDISABLED")) {
    if (!has_cap("AUTH=PLAIN")) {
      fail(error_kind::auth_method_unsupported,
           "server disables LOGIN and offers no AUTH=PLAIN");
      return;
    }
    auto b = writer_.begin("AUTHENTICATE").atom("PLAIN");
    if (sasl_ir) {
      b.atom(sasl_plain(opts_.username, opts_.secret));
      auth_ir_sent_ = true;
    }
    send(b.finish(), cmd_kind::authenticate);
    return;
  }
  send(writer_.begin("LOGIN").astring(opts_.username).astring(opts_.secret).finish(),
       cmd_kind::login);
}

void scan_session::authenticated() {
  if (start_compress_if_offered()) return;
  // With UTF8=ACCEPT, names travel as UTF-8 both ways and no mUTF-7 guessing is needed.
  if (has_cap("UTF8=ACCEPT") || has_cap("UTF8=ONLY")) {
    phase_ = phase::enable;
    send(writer_.begin("ENABLE").atom("UTF8=ACCEPT").finish(), cmd_kind::enable);
    return;
  }
  start_folders();
}

void scan_session::start_folders() {
  if (folders_.empty()) {
    phase_ = phase::list;
    auto b = writer_.begin("LIST").string("").string("*");
    if (const auto ret = list_command_return(); !ret.empty()) b.atom(ret);
    send(b.finish(), cmd_kind::list);
    return;
  }
  folder_index_ = 0;
  open_folder();
}

const folder_checkpoint* scan_session::checkpoint() const {
  const auto it = opts_.checkpoints.find(folders_[folder_index_].name);
  return it == opts_.checkpoints.end() ? nullptr : &it->second;
}

void scan_session::open_folder() {
  if (folder_index_ >= folders_.size()) {
    after_last_folder();
    return;
  }
  if (finish_early_) {  // the folder before was complete: the next ones wait for the next scan
    end_early();
    return;
  }
  phase_ = phase::select;
  uidvalidity_ = uidnext_ = exists_ = 0;
  highest_modseq_ = 0;
  mailbox_id_.clear();
  actions_.clear();
  running_.reset();
  uids_.clear();
  large_uids_.clear();
  batch_pos_ = 0;
  highest_uid_ = 0;
  probe_date_.reset();
  window_on_client_ = false;
  spec_ = speculation::none;
  probe_behind_search_ = probe_answered_ = false;
  if (check_unchanged()) return;
  const auto& f = folders_[folder_index_];
  // SELECT (read-write) when scanning unread mail, so that \Seen can be set later on this
  // connection; EXAMINE otherwise, so that fetching never changes the mailbox.
  auto b = writer_.begin(opts_.unread_only || opts_.read_write ? "SELECT" : "EXAMINE");
  if (f.configured) b.mailbox(f.name);
  else b.astring(f.wire);
  send(b.finish(), cmd_kind::select);
  selected_ = true;
  speculate_search();
}

// Sent right behind the EXAMINE: the search folder_selected() would most likely ask for next.
// A search in a folder that failed to open, turned out empty or changed its UIDVALIDITY is
// dropped unread (drop_speculation); it never errs on an empty folder, unlike a FETCH (some
// servers disconnect after a few BAD answers).
void scan_session::speculate_search() {
  const auto* cp = checkpoint();
  if (cp && cp->uidvalidity != 0 && cp->last_uid > 0)
    spec_ = speculation::resume;
  else if (opts_.since_unix == 0)
    spec_ = speculation::all;
  else if (has_cap("ESEARCH"))
    spec_ = speculation::all_in_window;
  else
    return;  // a plain SEARCH ALL answers with every UID: not worth guessing
  send_search(search_criteria(spec_ == speculation::resume, false));
}

void scan_session::drop_speculation() {
  for (auto& p : pending_)
    if (p.kind == cmd_kind::search_all || p.kind == cmd_kind::search_large) p.kind = cmd_kind::discarded_search;
  searches_left_ = 0;
  spec_ = speculation::none;
}

void scan_session::folder_selected() {
  const auto* cp = checkpoint();
  const bool changed = cp && cp->uidvalidity != 0 && cp->uidvalidity != uidvalidity_;
  const auto& f = folders_[folder_index_];
  out_.push_back(folder_opened{f.name, uidvalidity_, uidnext_, exists_, changed, f.special_use,
                              mailbox_id_});
  if (cp && !changed) highest_uid_ = cp->last_uid;
  if (exists_ == 0) {
    drop_speculation();
    finish_folder();
    return;
  }
  const auto spec = std::exchange(spec_, speculation::none);
  if ((spec == speculation::resume && !changed) || spec == speculation::all) {
    phase_ = phase::search;  // its answer is on the way
    return;
  }
  if (spec == speculation::all_in_window) {
    phase_ = phase::search;
    if (exists_ <= fetch_batch_size()) {
      // One batch fetches the folder anyway, INTERNALDATE included: the window is applied
      // here (before_window) instead of by a date probe.
      window_on_client_ = true;
    } else {
      send(writer_.begin("FETCH").atom("1").atom("(INTERNALDATE)").finish(), cmd_kind::date_probe);
      probe_behind_search_ = true;
    }
    return;
  }
  if (spec != speculation::none) drop_speculation();
  if (opts_.since_unix > 0 && !(cp && !changed && cp->last_uid > 0)) {
    // UID SEARCH SINCE makes the server look up the date of every message in the folder
    // (dovecot: ~6.5 us of its CPU per message, a tenth of what serving the whole header
    // scan costs). A folder whose first message is already inside the window rarely holds
    // anything older: one message's date tells, and SEARCH ALL costs the server nothing.
    phase_ = phase::date_probe;
    send(writer_.begin("FETCH").atom("1").atom("(INTERNALDATE)").finish(), cmd_kind::date_probe);
    return;
  }
  start_search();
}

// The window starts on the day SEARCH SINCE names (utc_day_start), and SINCE compares dates
// without time and zone: a message is in when its own calendar date is not before that day.
namespace {
constexpr std::int64_t max_zone_offset_s = 14 * 3600;  // UTC+14:00 (RFC 3501 zone range)
}  // namespace

void scan_session::date_probe_answered(bool ok) {
  // In the window by a whole day past any zone offset: the server's own date comparison
  // could not have left message 1 out. Anything else (no answer, unparsable, older, a
  // refusal) searches by date on the server as before.
  window_on_client_ = ok && probe_date_ &&
                      *probe_date_ >= utc_day_start(opts_.since_unix) + max_zone_offset_s;
  if (!probe_behind_search_) {
    start_search();
    return;
  }
  probe_answered_ = true;
  if (searches_left_ == 0) window_decided();
}

// all_in_window with a date probe behind the SEARCH ALL: both answered. Inside the window,
// the SEARCH ALL answer stands; otherwise the server searches by date after all.
void scan_session::window_decided() {
  probe_behind_search_ = probe_answered_ = false;
  if (window_on_client_) {
    phase_ = phase::search;
    searched();
    return;
  }
  uids_.clear();
  large_uids_.clear();
  start_search();
}

// Left out by the client-side window: a date the server would not have matched with SINCE.
// Lenient by the widest zone offset (a message is kept rather than lost), and a message
// without a usable INTERNALDATE is kept.
bool scan_session::before_window(std::int64_t internaldate) const {
  return window_on_client_ && internaldate != 0 &&
         internaldate < utc_day_start(opts_.since_unix) - max_zone_offset_s;
}

void scan_session::start_search() {
  phase_ = phase::search;
  const auto* cp = checkpoint();
  const bool resume_from_checkpoint = cp && cp->uidvalidity == uidvalidity_ && cp->last_uid > 0;
  send_search(search_criteria(resume_from_checkpoint, opts_.since_unix > 0 && !window_on_client_));
}

// resume: the UIDs past the folder's checkpoint; by_date: SINCE the days_back window.
std::string scan_session::search_criteria(bool resume, bool by_date) const {
  std::string criteria;
  if (resume) {
    criteria = fmt::format("UID {}:*", static_cast<std::uint64_t>(checkpoint()->last_uid) + 1);
  } else if (by_date) {
    criteria = "SINCE " + format_search_date(opts_.since_unix);
  }
  if (opts_.unread_only) criteria += criteria.empty() ? "UNSEEN" : " UNSEEN";
  if (criteria.empty()) criteria = "ALL";
  // ESEARCH (RFC 4731) answers with a compact set instead of one number per message.
  if (has_cap("ESEARCH")) criteria = "RETURN (ALL) " + criteria;
  return criteria;
}

void scan_session::send_search(const std::string& criteria) {
  // Two pipelined searches tell which messages are too large for a whole-body fetch.
  std::string bytes;
  auto c1 = writer_.begin("UID SEARCH").atom(criteria).finish();
  pending_.push_back({c1.tag, cmd_kind::search_all});
  bytes += c1.parts[0];
  searches_left_ = 1;
  if (opts_.max_message_bytes > 0 && opts_.fetch == fetch_strategy::whole_message) {
    auto c2 = writer_.begin("UID SEARCH").atom(criteria).atom("LARGER").atom(
        std::to_string(opts_.max_message_bytes)).finish();
    pending_.push_back({c2.tag, cmd_kind::search_large});
    bytes += c2.parts[0];
    ++searches_left_;
  }
  out_.push_back(write_bytes{std::move(bytes)});
}

// Every search of the folder answered: fetch what it found.
void scan_session::searched() {
  std::sort(uids_.begin(), uids_.end());
  uids_.erase(std::unique(uids_.begin(), uids_.end()), uids_.end());
  std::sort(large_uids_.begin(), large_uids_.end());
  // "UID n:*" always matches the highest UID, even when it is below n.
  const auto* cp = checkpoint();
  if (cp && cp->uidvalidity == uidvalidity_) {
    const auto floor = cp->last_uid;
    uids_.erase(std::remove_if(uids_.begin(), uids_.end(), [&](std::uint32_t u) { return u <= floor; }),
                uids_.end());
  }
  if (uids_.empty()) finish_folder();
  else next_batch();
}

void scan_session::next_batch() {
  phase_ = phase::fetch;
  const std::size_t end = std::min(uids_.size(), batch_pos_ + fetch_batch_size());
  batch_.assign(uids_.begin() + static_cast<std::ptrdiff_t>(batch_pos_),
                uids_.begin() + static_cast<std::ptrdiff_t>(end));
  batch_pos_ = end;
  delivered_.assign(batch_.size(), false);
  // Identity items the server offers: Gmail's message id, the RFC 8474 email id, MODSEQ
  // when the mailbox has mod-sequences (asking for it enables CONDSTORE, RFC 7162 3.1).
  std::string extra;
  if (has_cap("X-GM-EXT-1")) extra += " X-GM-MSGID";
  if (has_cap("CONDSTORE") && highest_modseq_ > 0) extra += " MODSEQ";
  if (has_cap("OBJECTID")) extra += " EMAILID";
  if (opts_.fetch == fetch_strategy::structure) {
    fetch_stage_ = 1;
    staged_.assign(batch_.size(), staged_message{});
    std::string items = fmt::format("({}{})", structure_fetch_items, extra);
    send(writer_.begin("UID FETCH").atom(sequence_set(batch_)).atom(items).finish(), cmd_kind::fetch);
    fetches_left_ = 1;
    return;
  }
  std::vector<std::uint32_t> small, large;
  for (auto u : batch_)
    (std::binary_search(large_uids_.begin(), large_uids_.end(), u) ? large : small).push_back(u);
  std::string bytes;
  fetches_left_ = 0;
  if (!small.empty()) {
    auto c = writer_.begin("UID FETCH").atom(sequence_set(small))
                 .atom("(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]" + extra + ")").finish();
    pending_.push_back({c.tag, cmd_kind::fetch});
    bytes += c.parts[0];
    ++fetches_left_;
  }
  if (!large.empty()) {
    auto c = writer_.begin("UID FETCH").atom(sequence_set(large))
                 .atom(fmt::format("(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER] "
                                   "BODY.PEEK[TEXT]<0.{}>{})", opts_.max_message_bytes, extra))
                 .finish();
    pending_.push_back({c.tag, cmd_kind::fetch});
    bytes += c.parts[0];
    ++fetches_left_;
  }
  out_.push_back(write_bytes{std::move(bytes)});
}

void scan_session::handle_fetch(fetch_data& f) {
  if (phase_ != phase::fetch || !f.uid) return;
  const auto at = std::lower_bound(batch_.begin(), batch_.end(), *f.uid);
  if (at == batch_.end() || *at != *f.uid) return;
  const auto index = static_cast<std::size_t>(at - batch_.begin());
  if (delivered_[index]) return;  // a repeated answer for the same message
  if (opts_.fetch == fetch_strategy::structure) {
    handle_structure_fetch(f, index);
    return;
  }
  message_fetched m;
  m.truncated = false;
  if (auto* whole = f.find_section(""); whole && whole->data) {
    m.raw = std::move(*whole->data);
  } else {
    auto* header = f.find_section("HEADER");
    auto* text = f.find_section("TEXT");
    if (!header || !header->data) return;  // a flags-only update, not our answer
    m.raw = std::move(*header->data);
    if (text && text->data) m.raw += *text->data;
    m.truncated = true;
  }
  m.folder = folders_[folder_index_].name;
  m.uidvalidity = uidvalidity_;
  m.uid = *f.uid;
  m.size = f.rfc822_size.value_or(m.raw.size());
  m.internaldate = f.internaldate ? parse_internaldate(*f.internaldate).value_or(0) : 0;
  if (before_window(m.internaldate)) {
    delivered_[index] = true;  // answered, and outside days_back: not tracked
    return;
  }
  if (f.flags) m.flags = std::move(*f.flags);
  m.gm_msgid = f.gm_msgid.value_or(0);
  m.modseq = f.modseq.value_or(0);
  if (f.email_id) m.email_id = std::move(*f.email_id);
  delivered_[index] = true;
  out_.push_back(std::move(m));
}

void scan_session::handle_structure_fetch(fetch_data& f, std::size_t index) {
  auto& st = staged_[index];
  if (fetch_stage_ == 2) {
    if (!st.have_meta) return;
    for (auto& sec : f.sections) {
      if (sec.binary || !sec.data) continue;
      std::string key = sec.section;
      for (auto& c : key)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      st.sections[std::move(key)] = std::move(*sec.data);
    }
    return;
  }
  // Stage 1; a server may split one message's answer over several FETCH responses.
  auto& m = st.m;
  if (f.flags) m.flags = std::move(*f.flags);
  if (f.rfc822_size) m.size = *f.rfc822_size;
  if (f.internaldate) m.internaldate = parse_internaldate(*f.internaldate).value_or(0);
  if (f.gm_msgid) m.gm_msgid = *f.gm_msgid;
  if (f.modseq) m.modseq = *f.modseq;
  if (f.email_id) m.email_id = std::move(*f.email_id);
  if (f.bodystructure) st.root = parse_body_structure(std::move(*f.bodystructure));
  if (auto* whole = f.find_section(""); whole && whole->data) {
    // More than we asked for: the whole message is as good as it gets.
    st.have_meta = true;
    st.plan = fetch_plan{};
    st.sections[""] = std::move(*whole->data);
    if (!st.root) st.root = body_part{};
  } else if (auto* header = f.find_section("HEADER"); header && header->data) {
    st.have_meta = true;
    st.header = std::move(*header->data);
  }
}

void scan_session::fetch_parts() {
  // Messages that need the same sections share one command: most batches need very few.
  std::map<std::string, std::vector<std::uint32_t>> by_items;
  for (std::size_t i = 0; i < staged_.size(); ++i) {
    auto& st = staged_[i];
    if (!st.have_meta || st.sections.count("") || before_window(st.m.internaldate)) continue;
    if (!st.root) {
      // No usable BODYSTRUCTURE: the whole message, capped.
      st.root = body_part{};
      st.plan.sections = {""};
      st.plan.capped = {""};
    } else {
      st.plan = plan_fetch(*st.root, st.header, opts_.fetch_text);
    }
    auto items = st.plan.items(opts_.max_message_bytes);
    if (!items.empty()) by_items[std::move(items)].push_back(batch_[i]);
  }
  fetch_stage_ = 2;
  fetches_left_ = 0;
  if (by_items.empty()) {
    complete_batch();
    return;
  }
  std::string bytes;
  for (const auto& [items, uids] : by_items) {
    auto c = writer_.begin("UID FETCH").atom(sequence_set(uids)).atom("(UID " + items + ")").finish();
    pending_.push_back({c.tag, cmd_kind::fetch_parts});
    bytes += c.parts[0];
    ++fetches_left_;
  }
  out_.push_back(write_bytes{std::move(bytes)});
}

void scan_session::complete_batch() {
  if (opts_.fetch == fetch_strategy::structure) {
    for (std::size_t i = 0; i < staged_.size(); ++i) {
      auto& st = staged_[i];
      if (!st.have_meta) continue;  // expunged meanwhile
      if (before_window(st.m.internaldate)) continue;
      message_fetched m = std::move(st.m);
      m.folder = folders_[folder_index_].name;
      m.uidvalidity = uidvalidity_;
      m.uid = batch_[i];
      bool truncated = false;
      m.raw = assemble_message(*st.root, st.header, st.sections, opts_.max_message_bytes, truncated);
      if (m.size == 0) m.size = m.raw.size();
      m.truncated = truncated;
      m.attachments = std::move(st.plan.attachments);
      delivered_[i] = true;
      out_.push_back(std::move(m));
    }
    staged_.clear();
    fetch_stage_ = 0;
  }
  if (!batch_.empty()) highest_uid_ = std::max(highest_uid_, batch_.back());
  out_.push_back(batch_complete{folders_[folder_index_].name, uidvalidity_, highest_uid_});
  phase_ = phase::await_resume;
}

void scan_session::finish_folder() {
  const auto& f = folders_[folder_index_];
  // Everything below UIDNEXT (as of SELECT) was considered by the search.
  if (uidnext_ > 0) highest_uid_ = std::max(highest_uid_, uidnext_ - 1);
  out_.push_back(folder_complete{f.name, uidvalidity_, highest_uid_, highest_modseq_});
  // A rescan after IDLE starts from here, not from the pass's first checkpoints.
  opts_.checkpoints[f.name] = {uidvalidity_, highest_uid_, highest_modseq_};
  ++folder_index_;
  open_folder();
}

void scan_session::logout() {
  auto c = writer_.begin("LOGOUT").finish();
  out_.push_back(write_bytes{std::move(c.parts[0])});
  logout_sent_ = true;
  phase_ = phase::done;
  out_.push_back(scan_complete{});
}

void scan_session::handle_tagged(const status_response& s) {
  const auto it = std::find_if(pending_.begin(), pending_.end(),
                               [&](const pending_cmd& p) { return p.tag == s.tag; });
  if (it == pending_.end()) {
    fail_protocol(fmt::format("response for unknown tag {}", response_parser::excerpt(s.tag, 40)));
    return;
  }
  const cmd_kind kind = it->kind;
  pending_.erase(it);
  if (handle_ext_tagged(kind, s)) return;
  literal_parts_.clear();
  const bool ok = s.status == status_kind::ok;
  if (s.code.kind == code_kind::capability) set_capabilities(s.code.list);
  switch (kind) {
    case cmd_kind::capability:
      if (!ok) return fail_protocol(fmt::format("CAPABILITY failed: {}", s.text));
      if (caps_.empty()) return fail_protocol("server announced no capabilities");
      after_capabilities();
      return;
    case cmd_kind::starttls:
      if (!ok) {
        fail(error_kind::starttls_unavailable, fmt::format("STARTTLS refused: {}", s.text));
        return;
      }
      phase_ = phase::tls_handshake;
      out_.push_back(start_tls{});
      return;
    case cmd_kind::login:
    case cmd_kind::authenticate:
      if (!ok) return fail_login(s);
      // Capabilities may differ after login; ask again only if the OK did not carry them.
      authenticated();
      return;
    case cmd_kind::enable:
      // Refused: carry on with modified UTF-7 names.
      start_folders();
      return;
    case cmd_kind::list:
      if (!ok) {
        if (fail_if_throttled(s)) return;
        return fail_protocol(fmt::format("LIST failed: {}", s.text));
      }
      folder_index_ = 0;
      open_folder();
      return;
    case cmd_kind::select:
      // A search sent behind the EXAMINE is answered after it: a server answering in
      // another order (or twice) is not followed into a state it cannot be in.
      if (phase_ != phase::select) return fail_protocol("EXAMINE/SELECT answered out of order");
      if (!ok) {
        drop_speculation();
        if (fail_if_throttled(s)) return;
        if (s.status == status_kind::bad)
          return fail_protocol(fmt::format("{} rejected: {}",
                                           opts_.unread_only || opts_.read_write ? "SELECT" : "EXAMINE", s.text));
        if (folders_[folder_index_].configured) {
          fail(error_kind::folder_not_found,
               fmt::format("folder \"{}\" cannot be opened: {}", folders_[folder_index_].name, s.text));
          return;
        }
        ++folder_index_;  // a listed folder vanished or is not ours to open: skip it
        open_folder();
        return;
      }
      folder_selected();
      return;
    case cmd_kind::date_probe:
      if (phase_ != phase::date_probe && !(probe_behind_search_ && phase_ == phase::search))
        return fail_protocol("FETCH 1 (INTERNALDATE) answered out of order");
      if (!ok && fail_if_throttled(s)) return;
      date_probe_answered(ok);
      return;
    case cmd_kind::search_all:
    case cmd_kind::search_large:
      if (phase_ != phase::search) return fail_protocol("UID SEARCH answered out of order");
      if (!ok) {
        if (fail_if_throttled(s)) return;
        return fail_protocol(fmt::format("UID SEARCH failed: {}", s.text));
      }
      if (--searches_left_ > 0) return;
      if (probe_behind_search_) {
        if (probe_answered_) window_decided();
        else phase_ = phase::date_probe;  // its answer follows
        return;
      }
      searched();
      return;
    case cmd_kind::fetch:
    case cmd_kind::fetch_parts:
      if (!ok) {
        if (fail_if_throttled(s)) return;
        return fail_protocol(fmt::format("UID FETCH failed: {}", s.text));
      }
      if (s.code.kind == code_kind::limit) fetch_limit_hit_ = true;
      if (--fetches_left_ > 0) return;
      if (fetch_limit_hit_ && fetch_stage_ != 2 && !apply_fetch_limit()) return;
      if (opts_.fetch == fetch_strategy::structure && fetch_stage_ == 1) {
        fetch_parts();
        return;
      }
      complete_batch();
      return;
    case cmd_kind::action:
      action_answered(s);
      return;
    case cmd_kind::logout:
      return;
    case cmd_kind::id:
    case cmd_kind::status:
    case cmd_kind::idle_select:
    case cmd_kind::idle:
    case cmd_kind::compress:
    case cmd_kind::unselect:
    case cmd_kind::discarded_search:
      return;  // handle_ext_tagged
  }
}

} // namespace mscan::imap
