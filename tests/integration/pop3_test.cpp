// POP3 scanning against a real dovecot-pop3d serving the fixture maildirs, through the
// `mailscan` executable as an operator runs it.
#include "protocols/mime/message.hpp"
#include "storage/store.hpp"
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

// A TCP relay to a dovecot port that misbehaves on purpose for its first connection: it hides
// the CAPA line starting with `hide` (e.g. "STLS", "SASL"), and/or cuts the connection once the
// server has sent `cut_after` bytes. Later connections are relayed as they are.
class pop3_relay {
 public:
  pop3_relay(std::uint16_t target, std::size_t cut_after, std::string hide = {})
    : target_(target), cut_after_(cut_after), hide_(std::move(hide)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~pop3_relay() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }
  std::size_t connections() const { return connections_; }
  std::string client_bytes() {  // what the client sent on the first connection
    std::lock_guard lock(mu_);
    return client_bytes_;
  }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0)
        continue;
      int client = ::accept(fd_, nullptr, nullptr);
      if (client < 0)
        continue;
      int server = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(target_);
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0)
        relay(client, server, connections_++ == 0);
      ::close(server);
      ::close(client);
    }
  }
  void relay(int client, int server, bool misbehave) {
    std::size_t sent = 0;
    char buf[16384];
    while (!stop_) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0)
        continue;
      if (p[0].revents) {
        auto n = ::read(client, buf, sizeof buf);
        if (n <= 0 || ::write(server, buf, static_cast<std::size_t>(n)) != n)
          return;
        if (misbehave) {
          std::lock_guard lock(mu_);
          client_bytes_.append(buf, static_cast<std::size_t>(n));
        }
      }
      if (p[1].revents) {
        auto n = ::read(server, buf, sizeof buf);
        if (n <= 0)
          return;
        std::string chunk(buf, static_cast<std::size_t>(n));
        if (misbehave && !hide_.empty())  // same length: "\nSTLS" -> "\nXTLS"
          for (auto pos = chunk.find("\n" + hide_); pos != std::string::npos; pos = chunk.find("\n" + hide_, pos))
            chunk[pos + 1] = 'X';
        bool cut = misbehave && cut_after_ && sent + chunk.size() >= cut_after_;
        if (cut)
          chunk.resize(cut_after_ - sent);
        if (::write(client, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size()) || cut)
          return;
        sent += chunk.size();
      }
    }
  }

  std::uint16_t target_;
  std::size_t cut_after_;
  std::string hide_;
  std::mutex mu_;
  std::string client_bytes_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> connections_{0};
  std::thread thread_;
};

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string write_config(const fs::path& dir, std::uint16_t port, std::string_view security, const std::string& ca,
                         std::string_view password = "pw", std::size_t batch_size = 20) {
  auto conf = dir / "mailscan.toml";
  std::ofstream(conf) << fmt::format(
    "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 0\nbatch_size = {}\n"
    "connect_timeout_s = 5\ncommand_timeout_s = 10\n\n"
    "[[mailbox]]\nuser = \"alice\"\naddress = \"alice@corp.example\"\ntype = \"pop3\"\nhost = \"127.0.0.1\"\n"
    "port = {}\nsecurity = \"{}\"\n{}username = \"alice\"\npassword = \"{}\"\n",
    batch_size, port, security, ca.empty() ? "" : fmt::format("ca_file = \"{}\"\n", ca), password);
  return conf.string();
}

struct tracked {
  std::size_t messages = 0, sightings = 0;
  std::set<std::uint32_t> uids;
};

tracked query(const std::string& conf) {
  auto r = test::run_mailscan({"query", "--config", conf, "messages", "--json"});
  REQUIRE(r.code == 0);
  tracked t;
  auto json = nlohmann::json::parse(r.out);
  for (auto& m : json.at("messages")) {
    ++t.messages;
    for (auto& s : m.at("sightings")) {
      ++t.sightings;
      CHECK(s.at("folder") == "INBOX");
      CHECK(t.uids.insert(s.at("uid").get<std::uint32_t>()).second);  // one uid per maildrop message
    }
  }
  return t;
}

// Sums of dovecot's POP3 session-end lines ("mscan_stats top=%t/%p retr=%r/%b del=%d/%m").
struct pop3_stats {
  std::size_t sessions = 0, top = 0, retr = 0, del = 0;
};
pop3_stats stats(const test::dovecot_fixture& dc) {
  pop3_stats s;
  static const std::regex line(R"(mscan_stats top=(\d+)/\d+ retr=(\d+)/\d+ del=(\d+)/)");
  auto log = read_all(dc.root() / "dovecot.log");
  for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) {
    ++s.sessions;
    s.top += std::stoul((*it)[1]);
    s.retr += std::stoul((*it)[2]);
    s.del += std::stoul((*it)[3]);
  }
  return s;
}

std::size_t maildir_files(const test::dovecot_fixture& dc) {
  std::size_t n = 0;
  for (auto sub : {"cur", "new"})
    for ([[maybe_unused]] auto& e : fs::directory_iterator(dc.maildir_path("alice", "INBOX") / sub))
      ++n;
  return n;
}

std::size_t stored_uidls(const std::string& conf) {
  auto db = storage::store::open(fs::path(conf).parent_path() / "data", {.read_only = true});
  REQUIRE(db);
  return db.value()->pop3_uidls("alice").size();
}

std::string message(int i) {
  return fmt::format("From: c{0}@customer.example\r\nTo: alice@corp.example\r\nSubject: pop {0}\r\n"
                     "Message-ID: <pop-{0}@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
                     "body {0}\r\n",
                     i);
}

#define REQUIRE_DOVECOT()                                  \
  if (!test::dovecot_available()) {                        \
    WARN("dovecot not installed: scripts/setup.sh");       \
    return;                                                \
  }

} // namespace

TEST_CASE("pop3: first scan tracks every message once, the next fetches nothing, new mail is picked up, "
          "nothing is deleted on the server",
          "[integration][pop3]") {
  REQUIRE_DOVECOT();
  test::dovecot_fixture dc({.users = {{"alice", "pw"}}, .pop3 = true});
  auto corpus = test::corpus_files();
  REQUIRE(corpus.size() >= 100);
  dc.seed_files("alice", "INBOX", corpus);
  const auto files = maildir_files(dc);
  auto dir = test::unique_test_dir("pop3-scan");
  // Implicit TLS (995-style) with the fixture's CA: certificate verified.
  auto conf = write_config(dir, dc.pop3s_port(), "tls", dc.ca_file());

  auto first = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << first.out << "\nstderr: " << first.err << "\ndovecot: " << dc.log_tail(20));
  REQUIRE(first.code == 0);
  auto t1 = query(conf);
  CHECK(t1.sightings == corpus.size());
  CHECK(t1.messages <= corpus.size());
  CHECK(stored_uidls(conf) == corpus.size());
  REQUIRE(dc.wait_for_log("mscan_stats top=", 1));
  auto s1 = stats(dc);
  CHECK(s1.retr == corpus.size());

  // Second pass: UIDL only.
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  REQUIRE(dc.wait_for_log("mscan_stats top=", 2));
  auto s2 = stats(dc);
  CHECK(s2.retr == s1.retr);
  CHECK(s2.top == s1.top);
  CHECK(query(conf).sightings == corpus.size());

  // A new message: exactly one RETR.
  dc.seed("alice", "INBOX", message(1));
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  REQUIRE(dc.wait_for_log("mscan_stats top=", 3));
  CHECK(stats(dc).retr == s1.retr + 1);
  CHECK(query(conf).sightings == corpus.size() + 1);

  // Never DELE: every file is still there and dovecot counted no deletion.
  CHECK(maildir_files(dc) == files + 1);
  CHECK(stats(dc).del == 0);

  auto st = test::run_mailscan({"status", "--config", conf, "--json"});
  auto sj = nlohmann::json::parse(st.out).at("mailboxes").at(0);
  CHECK(sj.at("state") == "ok");
  CHECK(sj.at("messages_tracked").get<std::size_t>() == t1.messages + 1);
}

TEST_CASE("pop3: a message deleted on the server does not break the next scan, its UIDL leaves the checkpoint",
          "[integration][pop3]") {
  REQUIRE_DOVECOT();
  test::dovecot_fixture dc({.users = {{"alice", "pw"}}, .pop3 = true});
  for (int i = 0; i < 6; ++i)
    dc.seed("alice", "INBOX", message(i));
  auto dir = test::unique_test_dir("pop3-deleted");
  auto conf = write_config(dir, dc.pop3_port(), "starttls", dc.ca_file());
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(stored_uidls(conf) == 6);
  // Another client deletes two messages (gone from the maildir), one more arrives.
  std::size_t removed = 0;
  for (auto sub : {"cur", "new"})  // dovecot moved what it saw to cur/
    for (auto& e : fs::directory_iterator(dc.maildir_path("alice", "INBOX") / sub))
      if (removed < 2 && fs::remove(e.path()))
        ++removed;
  REQUIRE(removed == 2);
  dc.seed("alice", "INBOX", message(99));
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(r.out << r.err << dc.log_tail(20));
  REQUIRE(r.code == 0);
  CHECK(stored_uidls(conf) == 5);
  auto t = query(conf);
  CHECK(t.messages == 7);  // what was tracked stays tracked
  CHECK(t.sightings == 7);
  // STLS was used: dovecot marks the login as TLS.
  CHECK(dc.count_in_log(", TLS") >= 2);
}

TEST_CASE("pop3: a connection cut in the middle of a RETR loses nothing on the rerun", "[integration][pop3]") {
  REQUIRE_DOVECOT();
  test::dovecot_fixture dc({.users = {{"alice", "pw"}}, .pop3 = true});
  auto corpus = test::corpus_files();
  REQUIRE(corpus.size() >= 60);
  dc.seed_files("alice", "INBOX", corpus);
  // ~8 KB a message: the cut lands inside a RETR some batches in.
  pop3_relay relay(dc.pop3_port(), 200 * 1024);
  auto dir = test::unique_test_dir("pop3-cut");
  auto conf = write_config(dir, relay.port(), "none", "", "pw", 5);
  auto first = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(first.out << first.err);
  CHECK(first.code == 3);
  auto partial = query(conf);
  CHECK(partial.sightings > 0);
  CHECK(partial.sightings < corpus.size());
  CHECK(stored_uidls(conf) == partial.sightings);  // the checkpoint covers exactly what is tracked
  auto second = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(second.out << second.err);
  REQUIRE(second.code == 0);
  auto all = query(conf);
  CHECK(all.sightings == corpus.size());
  CHECK(stored_uidls(conf) == corpus.size());
  CHECK(relay.connections() == 2);
}

TEST_CASE("pop3: diagnose and test-mailbox classify login_failed and starttls_unavailable", "[integration][pop3]") {
  REQUIRE_DOVECOT();
  test::dovecot_fixture dc({.users = {{"alice", "pw"}}, .pop3 = true});
  for (int i = 0; i < 3; ++i)
    dc.seed("alice", "INBOX", message(i));
  auto reason_of = [](const std::string& conf) {
    auto r = test::run_mailscan({"test-mailbox", "--config", conf, "alice", "--json"});
    INFO(r.out << r.err);
    auto j = nlohmann::json::parse(r.out).at("mailboxes").at(0);
    return std::make_pair(r.code, j);
  };
  SECTION("OK over implicit TLS: protocol, capabilities and the INBOX count") {
    auto [code, j] = reason_of(write_config(test::unique_test_dir("pop3-diag-ok"), dc.pop3s_port(), "tls", dc.ca_file()));
    CHECK(code == 0);
    CHECK(j.at("result") == "OK");
    CHECK(j.at("protocol") == "pop3");
    CHECK(j.at("folders").at(0).at("name") == "INBOX");
    CHECK(j.at("folders").at(0).at("messages") == 3);
    auto caps = j.at("capabilities").dump();
    CHECK(caps.find("UIDL") != std::string::npos);
  }
  SECTION("wrong password") {
    auto conf = write_config(test::unique_test_dir("pop3-diag-pw"), dc.pop3_port(), "none", "", "wrong-Pass-77");
    auto [code, j] = reason_of(conf);
    CHECK(code == 3);
    CHECK(j.at("reason") == "login_failed");
    CHECK(j.dump().find("wrong-Pass-77") == std::string::npos);
    auto d = test::run_mailscan({"diagnose", "--config", conf, "--json"});
    CHECK(d.code == 3);
    CHECK(nlohmann::json::parse(d.out).at("mailboxes").at(0).at("reason") == "login_failed");
  }
  SECTION("STLS required but not offered") {
    pop3_relay relay(dc.pop3_port(), 0, "STLS");
    auto [code, j] = reason_of(write_config(test::unique_test_dir("pop3-diag-stls"), relay.port(), "starttls", dc.ca_file()));
    CHECK(code == 3);
    CHECK(j.at("reason") == "starttls_unavailable");
    CHECK(relay.client_bytes() == "CAPA\r\n");  // nothing else was sent in clear
  }
  SECTION("certificate not trusted") {
    auto [code, j] = reason_of(write_config(test::unique_test_dir("pop3-diag-ca"), dc.pop3s_port(), "tls", dc.wrong_ca_file()));
    CHECK(code == 3);
    CHECK(j.at("reason") == "certificate_invalid");
  }
}

TEST_CASE("pop3: a rule's delete action DELEs exactly its messages, after they are tracked", "[integration][pop3]") {
  REQUIRE_DOVECOT();
  test::dovecot_fixture dc({.users = {{"alice", "pw"}}, .pop3 = true});
  for (int i = 0; i < 5; ++i)
    dc.seed("alice", "INBOX", message(i));
  dc.seed("alice", "INBOX",
          "From: spam@junk.example\r\nTo: alice@corp.example\r\nSubject: delete me\r\n"
          "Message-ID: <spam-1@junk.example>\r\n\r\nbuy\r\n");
  auto dir = test::unique_test_dir("pop3-dele");
  auto conf = write_config(dir, dc.pop3_port(), "none", "", "pw", 2);
  std::ofstream(conf, std::ios::app) << "\n[[rule]]\nname = \"Drop junk\"\nusers = [\"alice\"]\nmatch = \"all\"\n"
                                        "conditions = [ { field = \"subject\", op = \"contains\", value = \"delete me\" } ]\n"
                                        "actions = [ { type = \"delete\" } ]\n";
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(r.out << r.err << dc.log_tail(20));
  REQUIRE(r.code == 0);
  REQUIRE(dc.wait_for_log("mscan_stats top=", 1));
  CHECK(stats(dc).del == 1);
  CHECK(maildir_files(dc) == 5);
  CHECK(query(conf).messages == 6);  // the deleted message stays tracked
  auto e = test::run_mailscan({"explain", "--config", conf, "<spam-1@junk.example>"});
  CHECK(e.code == 0);
  // Next pass: its UIDL leaves the checkpoint, nothing else is deleted.
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  REQUIRE(dc.wait_for_log("mscan_stats top=", 2));
  CHECK(stats(dc).del == 1);
  CHECK(stored_uidls(conf) == 5);
}

TEST_CASE("pop3: USER/PASS when the server offers no SASL", "[integration][pop3]") {
  REQUIRE_DOVECOT();
  test::dovecot_fixture dc({.users = {{"alice", "pw"}}, .pop3 = true});
  dc.seed("alice", "INBOX", message(1));
  pop3_relay relay(dc.pop3_port(), 0, "SASL");
  auto conf = write_config(test::unique_test_dir("pop3-userpass"), relay.port(), "none", "");
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(r.out << r.err << dc.log_tail(10));
  REQUIRE(r.code == 0);
  CHECK(query(conf).messages == 1);
  CHECK(relay.connections() == 1);
  CHECK(relay.client_bytes().find("USER alice\r\nPASS ") != std::string::npos);
  CHECK(relay.client_bytes().find("AUTH") == std::string::npos);
  CHECK(dc.count_in_log("Login: user=<alice>") == 1);
}
