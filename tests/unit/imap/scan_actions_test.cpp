// scan_session's server-side actions (queue_action / mark_seen): the commands per capability
// set, TRYCREATE -> CREATE -> retry, refusals as action results. Each transcript is fed whole,
// one byte at a time (a split at every byte) and in 3-byte pieces, then cut at every byte.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocols/imap/scan_session.hpp"

using namespace mscan::imap;

namespace {

struct exchange {
  std::string client;  // what the session must have written before...
  std::string server;  // ...the server says this
};

struct outcome {
  std::vector<action_done> done;
  std::vector<std::string> warnings;
  bool complete = false;
  std::string failure;
  std::vector<std::string> mismatches;  // "step i: expected ... got ..."
};

session_options options() {
  session_options o;
  o.username = "alice";
  o.secret = "s3cret-pw";
  o.folders = {"INBOX"};
  o.fetch = fetch_strategy::whole_message;
  o.max_message_bytes = 0;  // one UID SEARCH, no LARGER
  o.read_write = true;
  return o;
}

// Plays the script; when the first batch completes, the owner queues `actions` and resumes.
// `cut` < total server bytes: the connection drops after that many bytes (then on_eof()).
outcome play(const session_options& o, const std::vector<exchange>& script,
             const std::vector<action_request>& actions, std::size_t chunk,
             std::size_t cut = std::string::npos) {
  scan_session s(o);
  outcome r;
  std::string written;
  bool queued = false;
  std::size_t fed = 0;
  auto drain = [&] {
    for (;;) {
      while (auto out = s.poll()) {
        if (auto* w = std::get_if<write_bytes>(&*out)) written += w->data;
        else if (auto* d = std::get_if<action_done>(&*out)) r.done.push_back(std::move(*d));
        else if (auto* w2 = std::get_if<session_warning>(&*out)) r.warnings.push_back(w2->detail);
        else if (std::holds_alternative<scan_complete>(*out)) r.complete = true;
        else if (auto* f = std::get_if<scan_failed>(&*out)) r.failure = f->err.detail;
      }
      if (!s.awaiting_resume()) return;
      if (!queued) {
        queued = true;
        for (const auto& a : actions) s.queue_action(a);
      }
      s.resume();
    }
  };
  for (std::size_t i = 0; i < script.size() && !s.finished(); ++i) {
    drain();
    if (written != script[i].client)
      r.mismatches.push_back("step " + std::to_string(i) + ": expected [" + script[i].client + "] got [" + written + "]");
    written.clear();
    const std::string& bytes = script[i].server;
    const std::size_t step = chunk == 0 ? bytes.size() : chunk;
    for (std::size_t p = 0; p < bytes.size() && !s.finished(); p += step) {
      auto piece = std::string_view(bytes).substr(p, std::min(step, bytes.size() - p));
      if (fed + piece.size() >= cut) {
        s.on_bytes(piece.substr(0, cut - fed));
        drain();
        s.on_eof();
        drain();
        return r;
      }
      fed += piece.size();
      s.on_bytes(piece);
      drain();
    }
  }
  drain();
  return r;
}

std::vector<exchange> prologue(const std::string& caps) {
  return {
      {"", "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN" + caps + "] ready\r\n"},
      {"a1 LOGIN alice s3cret-pw\r\n", "a1 OK Logged in\r\n"},
      {"a2 SELECT INBOX\r\na3 UID SEARCH ALL\r\n",  // the search goes out behind the SELECT
       "* 3 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n* OK [UIDNEXT 4] x\r\na2 OK [READ-WRITE] done\r\n"},
      {"", "* SEARCH 1 2 3\r\na3 OK done\r\n"},
      {"a4 UID FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n",
       "* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n* 2 FETCH (UID 2 BODY[] {5}\r\nhello)\r\n"
       "* 3 FETCH (UID 3 BODY[] {5}\r\nhello)\r\na4 OK done\r\n"},
  };
}

std::vector<action_request> three_actions() {
  return {{1, action_kind::mark_read, {1}, {}},
          {2, action_kind::move, {2}, "Done/\xc3\x84rger"},   // "Done/Ärger": mUTF-7 on the wire
          {3, action_kind::remove, {3}, {}}};
}

std::size_t server_bytes(const std::vector<exchange>& script) {
  std::size_t n = 0;
  for (const auto& e : script) n += e.server.size();
  return n;
}

void check_every_split(const session_options& o, const std::vector<exchange>& script,
                       const std::vector<action_request>& actions, const outcome& whole) {
  for (std::size_t chunk : {1u, 3u}) {
    const auto r = play(o, script, actions, chunk);
    INFO("chunk " << chunk);
    CHECK(r.mismatches.empty());
    CHECK(r.complete == whole.complete);
    CHECK(r.done.size() == whole.done.size());
  }
  // Cut at every byte: exactly one terminal outcome, never a crash, results only for
  // commands that were answered.
  const auto total = server_bytes(script);
  for (std::size_t cut = 0; cut < total; ++cut) {
    const auto r = play(o, script, actions, 0, cut);
    INFO("cut after " << cut << " of " << total);
    CHECK((r.complete != !r.failure.empty()));
    CHECK(r.done.size() <= whole.done.size());
  }
}

} // namespace

TEST_CASE("actions: MOVE + UIDPLUS, TRYCREATE creates the folder and retries", "[unit][actions]") {
  auto script = prologue(" MOVE UIDPLUS");
  script.push_back({"a5 UID STORE 1 +FLAGS.SILENT (\\Seen)\r\n", "a5 OK Store completed.\r\n"});
  script.push_back({"a6 UID MOVE 2 Done/&AMQ-rger\r\n", "a6 NO [TRYCREATE] Mailbox doesn't exist: Done/&AMQ-rger\r\n"});
  script.push_back({"a7 CREATE Done/&AMQ-rger\r\n", "a7 OK Create completed.\r\n"});
  script.push_back({"a8 UID MOVE 2 Done/&AMQ-rger\r\n",
                    "* OK [COPYUID 9 2 1] Moved UIDs.\r\n* 2 EXPUNGE\r\na8 OK Move completed.\r\n"});
  script.push_back({"a9 UID STORE 3 +FLAGS.SILENT (\\Deleted)\r\n", "a9 OK Store completed.\r\n"});
  script.push_back({"a10 UID EXPUNGE 3\r\n", "* 2 EXPUNGE\r\na10 OK Expunge completed.\r\n"});
  script.push_back({"a11 LOGOUT\r\n", "* BYE Logging out\r\na11 OK Logout completed.\r\n"});
  const auto r = play(options(), script, three_actions(), 0);
  CHECK(r.mismatches.empty());
  for (auto& m : r.mismatches) UNSCOPED_INFO(m);
  REQUIRE(r.complete);
  REQUIRE(r.done.size() == 3);
  CHECK(r.done[0].id == 1);
  CHECK(r.done[0].ok);
  CHECK(r.done[1].id == 2);
  CHECK(r.done[1].ok);
  CHECK(r.done[1].folder == "INBOX");
  CHECK(r.done[1].target == "Done/\xc3\x84rger");
  CHECK(r.done[1].detail == "folder created");
  CHECK(r.done[1].uids == std::vector<std::uint32_t>{2});
  CHECK(r.done[2].ok);
  CHECK(r.warnings.empty());
  check_every_split(options(), script, three_actions(), r);
}

TEST_CASE("actions: without MOVE, COPY + STORE Deleted + UID EXPUNGE, refusals are results", "[unit][actions]") {
  auto script = prologue(" UIDPLUS");
  script.push_back({"a5 UID STORE 1 +FLAGS.SILENT (\\Seen)\r\n", "a5 NO [CANNOT] flags are read-only here\r\n"});
  script.push_back({"a6 UID COPY 2 Done/&AMQ-rger\r\n", "a6 NO [TRYCREATE] no such mailbox\r\n"});
  script.push_back({"a7 CREATE Done/&AMQ-rger\r\n", "a7 NO [ALREADYEXISTS] someone was faster\r\n"});
  script.push_back({"a8 UID COPY 2 Done/&AMQ-rger\r\n", "a8 OK [COPYUID 9 2 1] Copy completed.\r\n"});
  script.push_back({"a9 UID STORE 2 +FLAGS.SILENT (\\Deleted)\r\n", "a9 OK Store completed.\r\n"});
  script.push_back({"a10 UID EXPUNGE 2\r\n", "* 2 EXPUNGE\r\na10 OK Expunge completed.\r\n"});
  script.push_back({"a11 UID STORE 3 +FLAGS.SILENT (\\Deleted)\r\n", "a11 BAD [CLIENTBUG] no\r\n"});
  script.push_back({"a12 LOGOUT\r\n", "a12 OK bye\r\n"});
  const auto r = play(options(), script, three_actions(), 0);
  for (auto& m : r.mismatches) UNSCOPED_INFO(m);
  CHECK(r.mismatches.empty());
  REQUIRE(r.complete);
  REQUIRE(r.done.size() == 3);
  CHECK_FALSE(r.done[0].ok);
  CHECK(r.done[0].detail == "UID STORE (\\Seen) refused: [CANNOT] flags are read-only here");
  CHECK(r.done[1].ok);
  CHECK_FALSE(r.done[2].ok);
  CHECK(r.done[2].detail.find("[CLIENTBUG] no") != std::string::npos);
  check_every_split(options(), script, three_actions(), r);
}

TEST_CASE("actions: without UIDPLUS nothing is expunged and the result says so", "[unit][actions]") {
  auto script = prologue("");
  script.push_back({"a5 UID STORE 1 +FLAGS.SILENT (\\Seen)\r\n", "a5 OK done\r\n"});
  script.push_back({"a6 UID COPY 2 Done/&AMQ-rger\r\n", "a6 OK done\r\n"});
  script.push_back({"a7 UID STORE 2 +FLAGS.SILENT (\\Deleted)\r\n", "a7 OK done\r\n"});
  script.push_back({"a8 UID STORE 3 +FLAGS.SILENT (\\Deleted)\r\n", "a8 OK done\r\n"});
  script.push_back({"a9 LOGOUT\r\n", "a9 OK bye\r\n"});
  const auto r = play(options(), script, three_actions(), 0);
  for (auto& m : r.mismatches) UNSCOPED_INFO(m);
  CHECK(r.mismatches.empty());
  REQUIRE(r.complete);
  REQUIRE(r.done.size() == 3);
  CHECK(r.done[0].ok);
  CHECK_FALSE(r.done[1].ok);
  CHECK(r.done[1].detail.find("copied; left flagged \\Deleted, not expunged") == 0);
  CHECK_FALSE(r.done[2].ok);
  CHECK(r.done[2].detail.find("lacks UIDPLUS") != std::string::npos);
  check_every_split(options(), script, three_actions(), r);
}

TEST_CASE("actions: a move into the folder itself is a no-op, EXAMINE refuses actions", "[unit][actions]") {
  {
    auto script = prologue(" MOVE UIDPLUS");
    script.push_back({"a5 LOGOUT\r\n", "a5 OK bye\r\n"});
    const auto r = play(options(), script, {{7, action_kind::move, {1, 2}, "inbox"}}, 0);
    for (auto& m : r.mismatches) UNSCOPED_INFO(m);
    CHECK(r.mismatches.empty());
    REQUIRE(r.done.size() == 1);
    CHECK(r.done[0].ok);
    CHECK(r.done[0].detail == "already in that folder");
  }
  {
    auto o = options();
    o.read_write = false;
    auto script = prologue(" MOVE UIDPLUS");
    script[2].client = "a2 EXAMINE INBOX\r\na3 UID SEARCH ALL\r\n";
    script.push_back({"a5 LOGOUT\r\n", "a5 OK bye\r\n"});
    const auto r = play(o, script, {{7, action_kind::remove, {1}, {}}}, 0);
    for (auto& m : r.mismatches) UNSCOPED_INFO(m);
    CHECK(r.mismatches.empty());
    REQUIRE(r.done.size() == 1);
    CHECK_FALSE(r.done[0].ok);
    CHECK(r.done[0].detail.find("read-only") != std::string::npos);
  }
}

TEST_CASE("actions: mark_seen and queue_action share one queue in order", "[unit][actions]") {
  auto script = prologue(" MOVE UIDPLUS");
  script.push_back({"a5 UID STORE 1:3 +FLAGS.SILENT (\\Seen)\r\n", "a5 OK done\r\n"});
  script.push_back({"a6 UID MOVE 2 Done\r\n", "a6 OK done\r\n"});
  script.push_back({"a7 LOGOUT\r\n", "a7 OK bye\r\n"});
  auto o = options();
  o.read_write = false;
  o.unread_only = true;   // SELECT, and its search asks for UNSEEN
  script[2].client = "a2 SELECT INBOX\r\na3 UID SEARCH UNSEEN\r\n";
  // mark_seen is queue_action with id 0: two of them in a row become one STORE.
  const auto r = play(o, script, {{0, action_kind::mark_read, {1, 3}, {}}, {0, action_kind::mark_read, {2}, {}},
                                  {5, action_kind::move, {2}, "Done"}}, 0);
  for (auto& m : r.mismatches) UNSCOPED_INFO(m);
  CHECK(r.mismatches.empty());
  REQUIRE(r.done.size() == 1);  // mark_seen reports only failures (as warnings)
  CHECK(r.done[0].id == 5);
  CHECK(r.warnings.empty());
}
