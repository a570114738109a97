// scan_session: the capability-driven extensions that make polling cheap and quick —
// ID (RFC 2971), the STATUS / LIST-STATUS shortcut for unchanged folders (RFC 3501 6.3.10,
// RFC 5819, HIGHESTMODSEQ from RFC 7162), MESSAGELIMIT (RFC 9738) and IDLE (RFC 2177).
// Kept apart from scan_session.cpp: the core scan flow calls in at a few hooks only.
#include "protocols/imap/scan_session.hpp"

#include <algorithm>
#include <charconv>
#include <utility>

#include <fmt/format.h>

#include "protocols/imap/utf7.hpp"

namespace mscan::imap {

namespace {
constexpr std::uint32_t limit_backoff_s = 60;
} // namespace

void scan_session::send_id() {
  if (!opts_.send_id || !has_cap("ID")) return;
  // Pipelined ahead of the login: no extra round trip. Client name and version only.
  send(writer_.begin("ID").raw(" (\"name\" \"mailscan\" \"version\"").string(opts_.client_version)
           .raw(")").finish(),
       cmd_kind::id);
}

bool scan_session::handle_ext(response& r) {
  if (auto* id = std::get_if<id_data>(&r)) {
    // Shown on terminals and in JSON: printable ASCII only (no escape sequences, no
    // invalid UTF-8 from a hostile server).
    for (auto& [k, v] : id->fields)
      for (auto* text : {&k, &v})
        for (auto& c : *text)
          if (c < 0x20 || c > 0x7e) c = '?';
    out_.push_back(server_identified{std::move(id->fields)});
    return true;
  }
  if (auto* st = std::get_if<status_data>(&r)) {
    if (phase_ == phase::list) listed_status_[st->mailbox] = std::move(*st);
    // Answers come in command order: the oldest STATUS without its tagged response owns it,
    // if it names that folder (anything else is ignored: the folder is then simply opened).
    else if (phase_ == phase::status && !status_queue_.empty()) {
      const auto& f = folders_[status_queue_.front()];
      std::string name = st->mailbox;
      if (!utf8_)
        if (auto decoded = utf7_decode(st->mailbox)) name = std::move(*decoded);
      if (st->mailbox == f.wire || name == f.name || (iequals(name, "INBOX") && iequals(f.name, "INBOX")))
        statuses_.try_emplace(status_queue_.front(), std::move(*st));
    }
    return true;
  }
  if (phase_ == phase::idle_wait && std::holds_alternative<continuation>(r)) {
    phase_ = phase::idling;
    const auto& f = folders_.front();
    out_.push_back(idle_started{f.name});
    // Mail that arrived between this folder's scan and the IDLE shows only in the SELECT
    // answer: report it now, or it would wait for the next arrival.
    const auto cp = opts_.checkpoints.find(f.name);
    if (cp != opts_.checkpoints.end() && uidvalidity_ == cp->second.uidvalidity &&
        std::uint64_t{uidnext_} > std::uint64_t{cp->second.last_uid} + 1)
      out_.push_back(idle_activity{idle_activity::kind::exists, f.name, exists_});
    return true;
  }
  if (phase_ == phase::idle_select) {
    // The folder's state as of the SELECT that precedes IDLE.
    if (auto* e = std::get_if<exists_data>(&r)) exists_ = e->count;
    if (auto* s = std::get_if<status_response>(&r); s && s->tag.empty() && s->status == status_kind::ok) {
      if (s->code.kind == code_kind::uidnext) uidnext_ = static_cast<std::uint32_t>(s->code.number);
      if (s->code.kind == code_kind::uidvalidity) uidvalidity_ = static_cast<std::uint32_t>(s->code.number);
    }
    return std::holds_alternative<exists_data>(r);
  }
  if (phase_ == phase::idling || phase_ == phase::idle_done) {
    const std::string& folder = folders_.front().name;
    using k = idle_activity::kind;
    if (auto* e = std::get_if<exists_data>(&r)) out_.push_back(idle_activity{k::exists, folder, e->count});
    else if (auto* x = std::get_if<expunge_data>(&r)) out_.push_back(idle_activity{k::expunge, folder, x->seq});
    else if (std::holds_alternative<vanished_data>(r)) out_.push_back(idle_activity{k::vanished, folder, 0});
    else if (auto* f = std::get_if<fetch_data>(&r)) out_.push_back(idle_activity{k::fetch, folder, f->seq});
    else return false;
    return true;
  }
  return false;
}

bool scan_session::handle_ext_tagged(cmd_kind kind, const status_response& s) {
  switch (kind) {
    case cmd_kind::id:
      // Pipelined before a login that may still wait for '+': its literal parts stay queued.
      // A refusal changes nothing.
    case cmd_kind::discarded_search:
      // (A dropped speculative search, answered before a later command such as the EXAMINE
      // of a folder with a literal name got its '+': the literal parts stay queued too.)
      return true;
    case cmd_kind::status:
      status_answered(s);
      return true;
    case cmd_kind::idle_select:
      idle_select_answered(s);
      return true;
    case cmd_kind::unselect:
      if (s.status != status_kind::ok) {
        out_.push_back(session_warning{"", fmt::format("cannot leave the folder to keep the session: {}", s.text)});
        logout();
        return true;
      }
      selected_ = false;
      out_.push_back(session_parked{});
      return true;
    case cmd_kind::idle:
      idle_answered(s);
      return true;
    case cmd_kind::compress:
      compress_answered(s);
      return true;
    case cmd_kind::list:
      // A server that announces LIST-STATUS but rejects its syntax: the plain LIST instead.
      if (s.status != status_kind::bad || !std::exchange(list_status_sent_, false)) return false;
      out_.push_back(session_warning{"", fmt::format("LIST RETURN (STATUS) rejected: {}", s.text)});
      folders_.clear();
      listed_status_.clear();
      send(writer_.begin("LIST").string("").string("*").finish(), cmd_kind::list);
      return true;
    default:
      return false;
  }
}

std::string scan_session::list_command_return() {
  // STATUS answers along with the LIST (RFC 5819) save one command per folder; only worth
  // asking when there are checkpoints to compare them with.
  if (!has_cap("LIST-STATUS") || opts_.checkpoints.empty()) return {};
  list_status_sent_ = true;
  return has_cap("CONDSTORE") ? "RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))"
                              : "RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY))";
}

// Called by open_folder() for folders_[folder_index_]: true when it took over (a STATUS was
// sent, or unchanged folders were skipped and the next step is under way).
bool scan_session::check_unchanged() {
  if (std::exchange(status_done_, false)) return false;
  // LIST-STATUS answers name their folder; from here on they are kept by folder index.
  if (!listed_status_.empty()) {
    for (std::size_t i = 0; i < folders_.size(); ++i) {
      if (folders_[i].configured) continue;
      if (auto it = listed_status_.find(folders_[i].wire); it != listed_status_.end())
        statuses_[i] = std::move(it->second);
    }
    listed_status_.clear();
  }
  // Folders already answered are decided here in a loop, not by recursion through
  // open_folder(): a mailbox may have thousands of unchanged folders.
  bool skipped = false;
  while (folder_index_ < folders_.size()) {
    const auto* cp = checkpoint();
    if (!cp || cp->uidvalidity == 0) break;
    const auto it = statuses_.find(folder_index_);
    if (it == statuses_.end()) {
      send_statuses();
      return true;
    }
    const auto st = std::move(it->second);
    statuses_.erase(it);
    if (!st || !emit_if_unchanged(*st)) break;
    skipped = true;
    ++folder_index_;
  }
  if (folder_index_ >= folders_.size()) {
    after_last_folder();
    return true;
  }
  if (skipped) {
    // open_folder() computed nothing for the new index yet: let it start over for it
    // (with the loop above having found it needs opening).
    status_done_ = true;
    open_folder();
    return true;
  }
  return false;
}

// STATUS for this folder and the following ones with a checkpoint, pipelined: one round
// trip for a mailbox of many folders on servers without LIST-STATUS (Exchange, Gmail).
void scan_session::send_statuses() {
  constexpr std::size_t max_pipelined = 64;
  phase_ = phase::status;
  const std::string items = has_cap("CONDSTORE") ? "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
                                                 : "(MESSAGES UIDNEXT UIDVALIDITY)";
  std::string bytes;
  for (std::size_t i = folder_index_; i < folders_.size() && status_queue_.size() < max_pipelined; ++i) {
    const auto& f = folders_[i];
    const auto cp = opts_.checkpoints.find(f.name);
    if (cp == opts_.checkpoints.end() || cp->second.uidvalidity == 0 || statuses_.count(i)) continue;
    auto b = writer_.begin("STATUS");
    if (f.configured) b.mailbox(f.name);
    else b.astring(f.wire);
    auto c = b.atom(items).finish();
    if (c.parts.size() > 1) {
      // A synchronising literal waits for '+': such a command goes alone.
      if (!status_queue_.empty()) break;
      status_queue_.push_back(i);
      send(std::move(c), cmd_kind::status);
      return;
    }
    pending_.push_back({c.tag, cmd_kind::status});
    status_queue_.push_back(i);
    bytes += c.parts[0];
  }
  out_.push_back(write_bytes{std::move(bytes)});
}

void scan_session::status_answered(const status_response& s) {
  if (status_queue_.empty()) return fail_protocol("STATUS answer without a STATUS command");
  const std::size_t index = status_queue_.front();
  status_queue_.pop_front();
  if (s.status != status_kind::ok) {
    if (fail_if_throttled(s)) return;
    // Opening it tells the same story with the usual classification (folder_not_found).
    statuses_[index] = std::nullopt;
  } else {
    statuses_.try_emplace(index, std::nullopt);  // OK without data: open it
  }
  if (status_queue_.empty()) open_folder();
}

bool scan_session::emit_if_unchanged(const status_data& st) {
  const auto* cp = checkpoint();
  if (!cp || !st.uidvalidity || !st.uidnext || *st.uidvalidity != cp->uidvalidity) return false;
  // UIDs only grow and UIDNEXT moves with every arrival: nothing above the checkpoint exists.
  if (std::uint64_t{*st.uidnext} > std::uint64_t{cp->last_uid} + 1) return false;
  const auto& f = folders_[folder_index_];
  // Only flags changed (or messages went away) if HIGHESTMODSEQ moved: nothing to fetch and
  // nothing to write. The checkpoint keeps the HIGHESTMODSEQ of the last time the folder was
  // opened: nothing decides by it, and a new one here cost every poll after a flag change a
  // synced commit and a round trip to the writer.
  out_.push_back(folder_unchanged{f.name, cp->uidvalidity, *st.uidnext, st.messages.value_or(0)});
  return true;
}

std::size_t scan_session::fetch_batch_size() const {
  std::size_t n = opts_.batch_size;
  constexpr std::string_view key = "MESSAGELIMIT=";
  for (const auto& c : caps_) {
    if (c.size() <= key.size() || !iequals(std::string_view(c).substr(0, key.size()), key)) continue;
    std::uint32_t limit = 0;
    const char* b = c.data() + key.size();
    if (auto [p, ec] = std::from_chars(b, c.data() + c.size(), limit); ec == std::errc{} && limit > 0)
      n = std::min<std::size_t>(n, limit);
  }
  if (message_limit_ > 0) n = std::min<std::size_t>(n, message_limit_);
  return std::max<std::size_t>(n, 1);
}

// OK [LIMIT] on a UID FETCH (RFC 9738): the server answered only the first messages of the
// batch. The rest goes back to the queue (nothing is skipped) and later batches are no
// larger than what it did answer; an answer without any message is throttling.
bool scan_session::apply_fetch_limit() {
  fetch_limit_hit_ = false;
  const bool structure = opts_.fetch == fetch_strategy::structure;
  std::size_t answered = 0;
  while (answered < batch_.size() && (structure ? staged_[answered].have_meta : delivered_[answered]))
    ++answered;
  if (answered == 0) {
    fail(error_kind::throttled,
         fmt::format("server is throttling: UID FETCH ended OK [LIMIT] without any message; retry after {} s",
                     limit_backoff_s),
         limit_backoff_s);
    return false;
  }
  if (answered < batch_.size()) {
    batch_pos_ -= batch_.size() - answered;
    batch_.resize(answered);
    delivered_.resize(answered);
    if (structure) staged_.resize(answered);
    message_limit_ = static_cast<std::uint32_t>(answered);
  }
  return true;
}

void scan_session::after_last_folder() {
  if (opts_.park) {
    park();
    return;
  }
  if (opts_.idle && has_cap("IDLE") && !folders_.empty()) {
    start_idle();
    return;
  }
  logout();
}

void scan_session::start_idle() {
  // The first folder (INBOX unless configured otherwise) is the one watched; selecting it
  // again also tells what arrived since its scan.
  phase_ = phase::idle_select;
  uidvalidity_ = uidnext_ = exists_ = 0;
  selected_ = true;
  const auto& f = folders_.front();
  auto b = writer_.begin(opts_.unread_only ? "SELECT" : "EXAMINE");
  if (f.configured) b.mailbox(f.name);
  else b.astring(f.wire);
  send(b.finish(), cmd_kind::idle_select);
}

void scan_session::idle_select_answered(const status_response& s) {
  if (s.status != status_kind::ok) {
    if (fail_if_throttled(s)) return;
    out_.push_back(session_warning{folders_.front().name, fmt::format("cannot IDLE: {}", s.text)});
    logout();
    return;
  }
  phase_ = phase::idle_wait;
  send(writer_.begin("IDLE").finish(), cmd_kind::idle);
}

void scan_session::idle_answered(const status_response& s) {
  const bool asked = phase_ == phase::idle_done;
  if (s.status != status_kind::ok) {
    if (fail_if_throttled(s)) return;
    if (phase_ == phase::idle_wait) {  // refused outright: nothing to wait on
      out_.push_back(session_warning{folders_.front().name, fmt::format("IDLE refused: {}", s.text)});
      logout();
      return;
    }
    return fail_protocol(fmt::format("IDLE ended with {}", s.text));
  }
  // A server may end IDLE on its own (OK without DONE): carry on idling.
  const idle_stop how = asked ? idle_stop_ : idle_stop::refresh;
  switch (how) {
    case idle_stop::logout:
      logout();
      return;
    case idle_stop::refresh:
      phase_ = phase::idle_wait;
      send(writer_.begin("IDLE").finish(), cmd_kind::idle);
      return;
    case idle_stop::rescan:
      restart_folders(true);  // the watched folder is selected and known to have changed
      return;
    case idle_stop::poll:
      restart_folders(false);
      return;
  }
}

void scan_session::restart_folders(bool first_changed) {
  listed_status_.clear();  // answers from before are stale now
  statuses_.clear();
  status_queue_.clear();
  finish_early_ = ended_early_ = false;
  folder_index_ = 0;
  status_done_ = first_changed;
  open_folder();
}

// STATUS of the selected folder is answered from the session's view of it (dovecot: new
// mail shows only after a NOOP): leave it. CLOSE deselects without expunging only when the
// folder was opened read-only (RFC 3501 6.4.2); a read-write one without UNSELECT logs out.
void scan_session::park() {
  if (selected_) {
    const bool read_only = !(opts_.unread_only || opts_.read_write);
    if (!has_cap("UNSELECT") && !read_only) return logout();
    phase_ = phase::parked;  // what the tagged answer completes
    send(writer_.begin(has_cap("UNSELECT") ? "UNSELECT" : "CLOSE").finish(), cmd_kind::unselect);
    return;
  }
  phase_ = phase::parked;
  out_.push_back(session_parked{});
}

void scan_session::repoll() {
  if (parked()) restart_folders(false);
}

bool scan_session::park_idle() {
  if (!parked() || !has_cap("IDLE") || folders_.empty()) return false;
  start_idle();
  return true;
}

void scan_session::end_parked() {
  if (parked()) logout();
}

bool scan_session::parked() const { return phase_ == phase::parked && pending_.empty(); }

void scan_session::stop_idle(idle_stop how) {
  if (phase_ != phase::idling) return;
  idle_stop_ = how;
  phase_ = phase::idle_done;
  out_.push_back(write_bytes{"DONE\r\n"});
}

bool scan_session::idling() const { return phase_ == phase::idling; }

bool scan_session::start_compress_if_offered() {
  if (!opts_.compress || compress_asked_ || !has_cap("COMPRESS=DEFLATE")) return false;
  compress_asked_ = true;
  phase_ = phase::compress;
  send(writer_.begin("COMPRESS").atom("DEFLATE").finish(), cmd_kind::compress);
  return true;
}

void scan_session::compress_answered(const status_response& s) {
  if (s.status == status_kind::ok) {
    compress_switch_ = true;
    out_.push_back(start_compress{});
  } else {
    out_.push_back(session_warning{"", fmt::format("COMPRESS refused: {}", s.text)});
  }
  authenticated();
}

std::string scan_session::take_compressed_rest() { return std::exchange(compressed_rest_, {}); }

} // namespace mscan::imap
