// Real sockets on 127.0.0.1: a small async Boost.Asio IMAP client drives the simulator.
// Every wait is bounded by io_context::run_for, never by sleeping.
#include <utility>  // before Asio (TOOLCHAIN.md)

#include <boost/asio.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <pthread.h>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "bench/simulator/command_framer.hpp"
#include "bench/simulator/message_generator.hpp"
#include "bench/simulator/simulator.hpp"

using namespace mscan::sim;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

class client {
 public:
  explicit client(std::uint16_t port) {
    boost::system::error_code ec;
    sock_->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    connected_ = !ec;
  }
  bool connected() const { return connected_; }

  // One response line including any literals it announces; nullopt on EOF or timeout.
  std::optional<std::string> line(std::chrono::milliseconds timeout = 10s) {
    for (;;) {
      const auto f = framer_.next(buf_);
      if (f.what == frame::kind::complete) {
        std::string l = buf_.substr(0, f.length);
        buf_.erase(0, f.length);
        return l;
      }
      if (f.what == frame::kind::too_long) return std::nullopt;
      if (!read_more(timeout)) return std::nullopt;
    }
  }

  void send(std::string_view text) {
    boost::system::error_code ec;
    asio::write(*sock_, asio::buffer(text.data(), text.size()), ec);
  }

  // Sends "tag text" and returns every line up to and including the tagged one.
  std::vector<std::string> command(const std::string& tag, const std::string& text) {
    send(tag + " " + text + "\r\n");
    return until_tagged(tag);
  }

  std::vector<std::string> until_tagged(const std::string& tag) {
    std::vector<std::string> out;
    while (auto l = line()) {
      out.push_back(*l);
      if (l->starts_with(tag + " ")) break;
    }
    return out;
  }

  // True once the server has closed the connection (bounded wait).
  bool closed_by_server() {
    while (read_more(10s)) {
    }
    return eof_;
  }

  std::string leftover() const { return buf_; }

 private:
  bool read_more(std::chrono::milliseconds timeout) {
    if (eof_) return false;  // edge-triggered epoll reports EOF only once
    std::array<char, 65536> tmp;
    bool done = false;
    boost::system::error_code ec;
    std::size_t n = 0;
    sock_->async_read_some(asio::buffer(tmp), [&](boost::system::error_code e, std::size_t k) {
      ec = e;
      n = k;
      done = true;
    });
    io_->restart();
    io_->run_for(timeout);
    if (!done) {
      sock_->cancel();
      io_->restart();
      io_->run();
      return false;
    }
    if (ec) {
      eof_ = ec == asio::error::eof || ec == asio::error::connection_reset;
      return false;
    }
    buf_.append(tmp.data(), n);
    return true;
  }

  std::unique_ptr<asio::io_context> io_ = std::make_unique<asio::io_context>();
  std::unique_ptr<tcp::socket> sock_ = std::make_unique<tcp::socket>(*io_);
  bool connected_ = false;
  bool eof_ = false;
  std::string buf_;
  command_framer framer_{1 << 20, 1 << 24};
};

sim_options small(std::size_t mailboxes = 5, std::size_t messages = 20) {
  sim_options o;
  o.mailboxes = mailboxes;
  o.messages = messages;
  o.seed = 42;
  o.base_time = parse_imap_date("24-Nov-2026");
  return o;
}

bool has_line(const std::vector<std::string>& lines, std::string_view text) {
  for (const auto& l : lines)
    if (l.find(text) != std::string::npos) return true;
  return false;
}

std::string tagged_line(const std::vector<std::string>& lines) {
  return lines.empty() ? std::string() : lines.back();
}

client logged_in(std::uint16_t port, const std::string& user = "sim1") {
  client c(port);
  REQUIRE(c.line());
  REQUIRE(tagged_line(c.command("l", "LOGIN " + user + " sim")).starts_with("l OK"));
  return c;
}

}  // namespace

TEST_CASE("greeting advertises the capabilities", "[unit]") {
  simulator sim(small());
  const auto port = sim.start();
  REQUIRE(port != 0);
  client c(port);
  REQUIRE(c.connected());
  const auto g = c.line();
  REQUIRE(g);
  REQUIRE(g->starts_with("* OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS MOVE IDLE ENABLE CONDSTORE "
                         "SPECIAL-USE AUTH=PLAIN SASL-IR ID LIST-STATUS]"));
  const auto caps = c.command("a1", "CAPABILITY");
  REQUIRE(caps.size() == 2);
  REQUIRE(caps[0].starts_with("* CAPABILITY IMAP4rev1"));
  REQUIRE(c.command("a2", "NOOP").back() == "a2 OK NOOP completed\r\n");
  REQUIRE(c.command("a3", "FROBNICATE").back().starts_with("a3 BAD"));
  REQUIRE(c.command("a4", "SELECT INBOX").back().starts_with("a4 BAD"));  // not logged in
  const auto bye = c.command("a5", "LOGOUT");
  REQUIRE(has_line(bye, "* BYE"));
  REQUIRE(c.closed_by_server());
}

TEST_CASE("non-loopback listen addresses are refused", "[unit]") {
  auto o = small();
  o.host = "0.0.0.0";
  simulator sim(o);
  REQUIRE(sim.start() == 0);
  REQUIRE(sim.last_error().find("non-loopback") != std::string::npos);
}

TEST_CASE("login succeeds for simN/sim and fails otherwise", "[unit]") {
  simulator sim(small());
  const auto port = sim.start();
  client c(port);
  REQUIRE(c.line());
  REQUIRE(c.command("a", "LOGIN sim0 wrong").back() == "a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n");
  REQUIRE(c.command("b", "LOGIN sim5 sim").back().starts_with("b NO [AUTHENTICATIONFAILED]"));  // only 5 users
  REQUIRE(c.command("c", "LOGIN sim01 sim").back().starts_with("c NO"));
  REQUIRE(c.command("d", "LOGIN \"sim4\" \"sim\"").back().starts_with("d OK [CAPABILITY"));
  REQUIRE(c.command("e", "LOGIN sim4 sim").back().starts_with("e BAD"));  // already authenticated

  // Synchronising literals get a continuation; LITERAL+ ones do not.
  client l(port);
  REQUIRE(l.line());
  l.send("x LOGIN {4}\r\n");
  REQUIRE(l.line() == "+ Ready for literal data\r\n");
  l.send("sim2 {3+}\r\nsim\r\n");
  REQUIRE(l.until_tagged("x").back().starts_with("x OK"));

  // AUTHENTICATE PLAIN with SASL-IR ("\0sim3\0sim") and with a continuation.
  client a(port);
  REQUIRE(a.line());
  REQUIRE(a.command("y", "AUTHENTICATE PLAIN AHNpbTMAc2lt").back().starts_with("y OK"));
  client b(port);
  REQUIRE(b.line());
  b.send("z AUTHENTICATE PLAIN\r\n");
  REQUIRE(b.line() == "+ \r\n");
  b.send("AHNpbTMAYmFk\r\n");  // "\0sim3\0bad"
  REQUIRE(b.until_tagged("z").back().starts_with("z NO [AUTHENTICATIONFAILED]"));

  const auto st = sim.stats();
  REQUIRE(st.logins == 3);
  REQUIRE(st.failed_logins == 4);
}

TEST_CASE("LIST, STATUS and SELECT report the mailbox numbers", "[unit]") {
  simulator sim(small(5, 20));
  const auto port = sim.start();
  auto c = logged_in(port);
  const auto list = c.command("a", "LIST \"\" \"*\"");
  REQUIRE(list.size() == 3);
  REQUIRE(list[0] == "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n");
  REQUIRE(list[1] == "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n");

  const auto status = c.command("b", "STATUS INBOX (MESSAGES UIDNEXT UNSEEN)");
  REQUIRE(status[0].starts_with("* STATUS \"INBOX\" (MESSAGES 20 UIDNEXT 21 UNSEEN "));

  const auto sel = c.command("c", "SELECT INBOX");
  REQUIRE(has_line(sel, "* 20 EXISTS\r\n"));
  REQUIRE(has_line(sel, "* OK [UIDNEXT 21]"));
  REQUIRE(has_line(sel, "* OK [HIGHESTMODSEQ 1]"));
  REQUIRE(has_line(sel, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"));
  REQUIRE(sel.back() == "c OK [READ-WRITE] SELECT completed\r\n");
  std::smatch m;
  std::string joined;
  for (const auto& l : sel) joined += l;
  REQUIRE(std::regex_search(joined, m, std::regex(R"(\[UIDVALIDITY (\d+)\])")));
  const auto validity = m[1].str();
  const auto again = c.command("d", "EXAMINE INBOX");
  REQUIRE(has_line(again, "[UIDVALIDITY " + validity + "]"));  // stable without the fault
  REQUIRE(again.back() == "d OK [READ-ONLY] EXAMINE completed\r\n");

  const auto sent = c.command("e", "SELECT Sent");
  REQUIRE(has_line(sent, "* 0 EXISTS"));
  REQUIRE(c.command("f", "SELECT Nowhere").back().starts_with("f NO [NONEXISTENT]"));
}

TEST_CASE("UID FETCH serves deterministic content with exact literal lengths", "[unit]") {
  simulator sim(small(5, 20));
  const auto port = sim.start();
  auto c = logged_in(port, "sim2");
  c.command("s", "SELECT INBOX");
  const auto r = c.command("f", "UID FETCH 3:7,10 (UID RFC822.SIZE FLAGS BODY.PEEK[])");
  REQUIRE(r.size() == 7);
  REQUIRE(r.back() == "f OK UID FETCH completed\r\n");
  const std::regex re(R"(^\* (\d+) FETCH \(UID (\d+) RFC822.SIZE (\d+) FLAGS \(([^)]*)\) BODY\[\] \{(\d+)\}\r\n)");
  std::vector<std::uint32_t> uids;
  for (std::size_t i = 0; i + 1 < r.size(); ++i) {
    std::smatch m;
    REQUIRE(std::regex_search(r[i], m, re));
    const auto uid = static_cast<std::uint32_t>(std::stoul(m[2]));
    uids.push_back(uid);
    REQUIRE(m[1] == std::to_string(uid));  // nothing expunged: seq == uid
    const auto expected = sim.message(2, uid);
    REQUIRE(std::stoul(m[3]) == expected.size());
    REQUIRE(std::stoul(m[5]) == expected.size());
    const auto literal_start = static_cast<std::size_t>(m.position(0) + m.length(0));
    REQUIRE(r[i].substr(literal_start, expected.size()) == expected);
    REQUIRE(r[i].substr(literal_start + expected.size()) == ")\r\n");
  }
  REQUIRE(uids == std::vector<std::uint32_t>{3, 4, 5, 6, 7, 10});
  // The same fetch on another connection is byte-identical (determinism).
  auto d = logged_in(port, "sim2");
  d.command("s", "EXAMINE INBOX");
  REQUIRE(d.command("f", "UID FETCH 3:7,10 (UID RFC822.SIZE FLAGS BODY.PEEK[])") == r);

  const auto hdr = c.command("h", "UID FETCH 20:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[TEXT]<0.5>)");
  REQUIRE(hdr.size() == 2);
  REQUIRE(hdr[0] == "* 20 FETCH (UID 20 BODY[HEADER.FIELDS (MESSAGE-ID)] {40}\r\nMessage-ID: <sim2.20.42@sim.example>\r\n\r\n"
                    " BODY[TEXT]<0> {5}\r\nThis )\r\n");
  const auto bs = c.command("b", "UID FETCH 10 (BODYSTRUCTURE INTERNALDATE)");
  REQUIRE(bs[0].find("\"APPLICATION\" \"PDF\"") != std::string::npos);
  REQUIRE(bs[0].find("INTERNALDATE \"") != std::string::npos);
  REQUIRE(c.command("x", "UID FETCH 1 (ENVELOPE_X)").back().starts_with("x BAD"));
  const auto env = c.command("v", "UID FETCH 5 (ENVELOPE)");
  std::smatch em;
  REQUIRE(std::regex_search(env[0], em, std::regex(
      R"re(^\* 5 FETCH \(UID 5 ENVELOPE \("[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} 2026 \d\d:\d\d:\d\d \+0000" "[^"]*OPP-10\d\d\)" )re"
      R"re(\(\("Person \d+" NIL "person\d+" "customer\d+\.example"\)\) .* \(\(NIL NIL "sim2" "tenant\.example"\)\) )re"
      R"re((NIL|\(\(.*\)\)) NIL NIL "<sim2\.5\.42@sim\.example>"\)\)\r\n$)re")));
  const auto mime = c.command("mm", "UID FETCH 10 (BODY.PEEK[1.MIME])");
  REQUIRE(mime[0] == "* 10 FETCH (UID 10 BODY[1.MIME] {79}\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                     "Content-Transfer-Encoding: 7bit\r\n\r\n)\r\n");
  // BODY[2] of a multipart is the attachment's encoded content, as long as BODYSTRUCTURE says.
  const auto part = c.command("p", "UID FETCH 10 (BODY.PEEK[2])");
  std::smatch pm;
  REQUIRE(std::regex_search(part[0], pm, std::regex(R"(BODY\[2\] \{(\d+)\}\r\nJVBERi0)")));
  REQUIRE(bs[0].find("\"BASE64\" " + pm[1].str() + " ") != std::string::npos);
}

TEST_CASE("UID SEARCH, STORE, MOVE and EXPUNGE keep a consistent mailbox", "[unit]") {
  simulator sim(small(3, 20));
  const auto port = sim.start();
  auto c = logged_in(port, "sim0");
  c.command("s", "SELECT INBOX");
  auto all = c.command("a", "UID SEARCH ALL");
  REQUIRE(all[0] == "* SEARCH 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20\r\n");
  REQUIRE(c.command("b", "UID SEARCH UID 18:*")[0] == "* SEARCH 18 19 20\r\n");
  // 20 messages over ten days, 12 h apart, uid 20 at midnight 24-Nov: 23-Nov holds 18 and 19.
  REQUIRE(c.command("c", "UID SEARCH SINCE 23-Nov-2026")[0] == "* SEARCH 18 19 20\r\n");
  const auto unseen = c.command("d", "UID SEARCH UNSEEN")[0];
  // The engine's pair of searches: everything after a checkpoint, and the large ones.
  REQUIRE(c.command("d2", "UID SEARCH UID 18:* LARGER 100")[0] == "* SEARCH 18 19 20\r\n");
  REQUIRE(c.command("d3", "UID SEARCH UID 18:* LARGER 100000")[0] == "* SEARCH\r\n");
  REQUIRE(c.command("d4", "UID SEARCH SMALLER 100000 UID 20")[0] == "* SEARCH 20\r\n");
  REQUIRE(c.command("d5", "UID SEARCH LARGER x").back().starts_with("d5 BAD"));

  REQUIRE(c.command("e", "UID STORE 1:20 +FLAGS.SILENT (\\Seen)").back() == "e OK UID STORE completed\r\n");
  REQUIRE(c.command("f", "UID SEARCH UNSEEN")[0] == "* SEARCH\r\n");
  REQUIRE(unseen != "* SEARCH\r\n");  // some were unseen before
  const auto st = c.command("g", "UID STORE 2 -FLAGS (\\Seen)");
  REQUIRE(st[0] == "* 2 FETCH (UID 2 FLAGS ())\r\n");
  REQUIRE(c.command("g1", "ENABLE CONDSTORE")[0] == "* ENABLED CONDSTORE\r\n");
  const auto st2 = c.command("g2", "UID STORE 2 +FLAGS (\\Flagged)");
  REQUIRE(st2[0].starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ ("));
  const auto changed = c.command("g3", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)");
  // Changed since the start: what the +FLAGS \\Seen above really changed (the unseen ones),
  // and uid 2.
  std::set<std::string> expect_changed{"2"};
  {
    std::istringstream in(unseen.substr(8));
    for (std::string u; in >> u;) expect_changed.insert(u);
  }
  std::set<std::string> got_changed;
  for (std::size_t i = 0; i + 1 < changed.size(); ++i) {
    std::smatch cm;
    REQUIRE(std::regex_search(changed[i], cm, std::regex(R"(^\* \d+ FETCH \(UID (\d+) FLAGS \([^)]*\) MODSEQ \(\d+\)\)\r\n$)")));
    got_changed.insert(cm[1]);
  }
  REQUIRE(got_changed == expect_changed);

  const auto mv = c.command("h", "UID MOVE 3:4 Sent");
  REQUIRE(has_line(mv, "[COPYUID "));
  REQUIRE(has_line(mv, "* 4 EXPUNGE"));
  REQUIRE(has_line(mv, "* 3 EXPUNGE"));
  REQUIRE(mv.back() == "h OK UID MOVE completed\r\n");
  REQUIRE(c.command("i", "UID FETCH 5 (UID)")[0] == "* 3 FETCH (UID 5)\r\n");  // renumbered

  c.command("j", "UID STORE 5 +FLAGS (\\Deleted)");
  const auto ex = c.command("k", "EXPUNGE");
  REQUIRE(ex[0] == "* 3 EXPUNGE\r\n");
  REQUIRE(has_line(c.command("l", "STATUS INBOX (MESSAGES)"), "(MESSAGES 17)"));
  const auto sent = c.command("m", "SELECT Sent");
  REQUIRE(has_line(sent, "* 2 EXISTS"));
  // The moved messages keep their content.
  const auto body = c.command("n", "UID FETCH 1 BODY.PEEK[]");
  REQUIRE(body[0].find(sim.message(0, 3)) != std::string::npos);
  REQUIRE(c.command("o", "UID COPY 1 Archive").back().starts_with("o NO [TRYCREATE]"));
  // Other users are untouched.
  auto other = logged_in(port, "sim1");
  REQUIRE(has_line(other.command("s", "SELECT INBOX"), "* 20 EXISTS"));
}

TEST_CASE("IDLE, pipelining and BAD commands", "[unit]") {
  simulator sim(small());
  const auto port = sim.start();
  auto c = logged_in(port);
  c.send("i IDLE\r\n");
  REQUIRE(c.line() == "+ idling\r\n");
  c.send("DONE\r\n");
  REQUIRE(c.line() == "i OK IDLE terminated\r\n");
  c.send("p1 NOOP\r\np2 SELECT INBOX\r\np3 UID FETCH 1 (UID)\r\n");
  REQUIRE(c.until_tagged("p1").back().starts_with("p1 OK"));
  REQUIRE(c.until_tagged("p2").back().starts_with("p2 OK"));
  REQUIRE(c.until_tagged("p3").back().starts_with("p3 OK"));
  REQUIRE(c.command("q", "UID FROB 1").back().starts_with("q BAD"));
  REQUIRE(c.command("r", "UID FETCH x:y (UID)").back().starts_with("r BAD"));
}

TEST_CASE("connections past max_connections are refused and counted", "[unit]") {
  auto o = small();
  o.max_connections = 2;
  simulator sim(o);
  const auto port = sim.start();
  client a(port), b(port);
  REQUIRE(a.line()->starts_with("* OK"));
  REQUIRE(b.line()->starts_with("* OK"));
  client c(port);
  REQUIRE(c.line() == "* BYE Too many connections\r\n");
  REQUIRE(c.closed_by_server());
  // Still serving the accepted ones.
  REQUIRE(a.command("n", "NOOP").back().starts_with("n OK"));
  const auto st = sim.stats();
  REQUIRE(st.refused == 1);
  REQUIRE(st.peak_connections == 2);
}

TEST_CASE("report JSON carries the contract fields", "[unit]") {
  simulator sim(small());
  const auto port = sim.start();
  {
    auto c = logged_in(port);
    c.command("s", "SELECT INBOX");
    c.command("f", "UID FETCH 1:3 (UID)");
    c.command("g", "FETCH 1 (FLAGS)");
    c.command("h", "UID SEARCH ALL");
  }
  const auto j = nlohmann::json::parse(sim.report_json());
  REQUIRE(j.at("peak_connections").get<int>() == 1);
  REQUIRE(j.at("logins").get<int>() == 1);
  REQUIRE(j.at("refused").get<int>() == 0);
  REQUIRE(j.at("commands").at("FETCH").get<int>() == 2);
  REQUIRE(j.at("commands").at("LOGIN").get<int>() == 1);
  REQUIRE(j.at("commands").at("SELECT").get<int>() == 1);
  REQUIRE(j.at("commands").at("SEARCH").get<int>() == 1);
}

TEST_CASE("run_simulate_command writes the report on SIGTERM", "[unit]") {
  char tmpl[] = "/tmp/mailscan-sim-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::filesystem::path dir(tmpl);
  // A free port: bind to 0, read it, release it.
  std::uint16_t port = 0;
  {
    asio::io_context io;
    tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = probe.local_endpoint().port();
  }
  auto o = small();
  o.port = port;
  o.report_file = (dir / "report.json").string();
  int rc = -1;
  std::thread runner([&] { rc = run_simulate_command(o); });
  // Connect until the listener is up (bounded by attempts, each a real connect, not a sleep).
  std::optional<client> c;
  for (int i = 0; i < 2000 && !(c && c->connected()); ++i) c.emplace(port);
  REQUIRE(c->connected());
  REQUIRE(c->line());
  REQUIRE(c->command("l", "LOGIN sim0 sim").back().starts_with("l OK"));
  ::kill(::getpid(), SIGTERM);  // process-directed: whichever thread gets it, the wait ends
  runner.join();
  REQUIRE(rc == 0);
  std::ifstream f(o.report_file);
  const auto j = nlohmann::json::parse(f);
  REQUIRE(j.at("logins").get<int>() == 1);
  REQUIRE(j.at("commands").at("LOGIN").get<int>() == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("2,000 concurrent connections are held open", "[unit]") {
  auto o = small(100, 10);
  o.max_connections = 5000;
  simulator sim(o);
  const auto port = sim.start();
  constexpr std::size_t n = 2000;
  asio::io_context io;
  std::vector<std::unique_ptr<tcp::socket>> socks;
  std::vector<std::array<char, 256>> bufs(n);
  std::size_t greeted = 0;
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    socks.push_back(std::make_unique<tcp::socket>(io));
    auto* s = socks.back().get();
    s->async_connect(ep, [&, s, i](boost::system::error_code ec) {
      if (ec) return;
      s->async_read_some(asio::buffer(bufs[i]), [&, i](boost::system::error_code e, std::size_t k) {
        if (!e && k > 4 && std::string_view(bufs[i].data(), 4) == "* OK") ++greeted;
      });
    });
  }
  io.run_for(60s);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  REQUIRE(greeted == n);
  const auto st = sim.stats();
  REQUIRE(st.connections == n);
  REQUIRE(st.peak_connections == n);
  REQUIRE(st.refused == 0);
  WARN("2000 connections greeted in " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                                      << " ms");
  REQUIRE(elapsed < 30s);
}

TEST_CASE("fault: wrong password", "[unit]") {
  auto o = small(20, 5);
  o.faults.wrong_password = 1.0;
  simulator sim(o);
  const auto port = sim.start();
  client c(port);
  REQUIRE(c.line());
  REQUIRE(c.command("a", "LOGIN sim3 sim").back() == "a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n");
  // A fraction picks a deterministic subset of the users.
  auto half = small(1000, 5);
  half.faults.wrong_password = 0.5;
  simulator h(half);
  std::size_t faulty = 0;
  for (std::size_t u = 0; u < 1000; ++u) faulty += h.has_wrong_password(u);
  REQUIRE(faulty > 400);
  REQUIRE(faulty < 600);
  REQUIRE_FALSE(h.has_disconnect_mid_fetch(0));
}

TEST_CASE("fault: disconnect in the middle of a FETCH literal", "[unit]") {
  auto o = small(3, 5);
  o.faults.disconnect_mid_fetch = 1.0;
  simulator sim(o);
  const auto port = sim.start();
  auto c = logged_in(port, "sim0");
  c.command("s", "SELECT INBOX");
  REQUIRE(c.command("h", "UID FETCH 1:* (UID FLAGS)").back().starts_with("h OK"));  // no body: no fault
  c.send("f UID FETCH 1:* (BODY.PEEK[])\r\n");
  REQUIRE_FALSE(c.line(5s));  // the literal never completes
  REQUIRE(c.closed_by_server());
  const auto partial = c.leftover();
  REQUIRE(partial.starts_with("* 1 FETCH (UID 1 BODY[] {"));
  REQUIRE(partial.size() < sim.message(0, 1).size());
}

TEST_CASE("fault: slow user responses are delayed", "[unit]") {
  auto o = small(3, 5);
  o.faults.slow = 1.0;
  o.faults.slow_ms = 300;
  simulator sim(o);
  const auto port = sim.start();
  client c(port);
  REQUIRE(c.line());
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(c.command("l", "LOGIN sim0 sim").back().starts_with("l OK"));
  REQUIRE(std::chrono::steady_clock::now() - t0 >= 300ms);
  t0 = std::chrono::steady_clock::now();
  REQUIRE(c.command("n", "NOOP").back().starts_with("n OK"));
  REQUIRE(std::chrono::steady_clock::now() - t0 >= 300ms);
}

TEST_CASE("fault: throttled users' LOGIN is refused while the throttling lasts, then accepted", "[unit]") {
  auto o = small(4, 5);
  o.faults.throttle = 1.0;
  o.faults.throttle_s = 1;
  o.faults.throttle_answer = "NO [UNAVAILABLE] Server Unavailable. 15";
  simulator sim(o);
  const auto port = sim.start();
  REQUIRE(sim.is_throttled(0));
  {
    client c(port);
    REQUIRE(c.line());
    REQUIRE(c.command("l", "LOGIN sim0 wrong").back().starts_with("l NO [UNAVAILABLE] Server Unavailable. 15"));
  }
  REQUIRE(sim.stats().throttled_logins == 1);
  REQUIRE(sim.stats().failed_logins == 0);  // refused before the password was looked at
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (sim.is_throttled(0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);  // (the fault is defined by wall time since start)
  REQUIRE_FALSE(sim.is_throttled(0));
  client c(port);
  REQUIRE(c.line());
  REQUIRE(c.command("l", "LOGIN sim0 sim").back().starts_with("l OK"));
  REQUIRE(sim.report_json().find("\"throttled_logins\":1") != std::string::npos);
  REQUIRE(sim.report_json().find("\"throttle\":[0,1,2,3]") != std::string::npos);
}

TEST_CASE("fault: UIDVALIDITY changes on every SELECT", "[unit]") {
  auto o = small(3, 5);
  o.faults.uidvalidity_reset = 1.0;
  simulator sim(o);
  const auto port = sim.start();
  auto c = logged_in(port, "sim0");
  auto validity = [&](const std::string& tag) {
    std::string joined;
    for (const auto& l : c.command(tag, "SELECT INBOX")) joined += l;
    std::smatch m;
    REQUIRE(std::regex_search(joined, m, std::regex(R"(\[UIDVALIDITY (\d+)\])")));
    return m[1].str();
  };
  const auto a = validity("a");
  const auto b = validity("b");
  REQUIRE(a != b);
}

TEST_CASE("listen addresses must be loopback", "[unit]") {
  auto a = parse_listen_address("127.0.0.1:1143");
  REQUIRE(a);
  REQUIRE(a->first == "127.0.0.1");
  REQUIRE(a->second == 1143);
  auto b = parse_listen_address("[::1]:0");
  REQUIRE(b);
  REQUIRE(b->first == "::1");
  REQUIRE(parse_listen_address("localhost:10")->second == 10);
  REQUIRE(parse_listen_address("10.0.0.1:143").error().find("non-loopback") != std::string::npos);
  REQUIRE_FALSE(parse_listen_address("127.0.0.1"));
  REQUIRE_FALSE(parse_listen_address("127.0.0.1:99999"));
  REQUIRE_FALSE(parse_listen_address("127.0.0.1:x"));
  REQUIRE_FALSE(parse_listen_address("::1:143"));
}

TEST_CASE("stop() closes idle, blocked and delayed connections promptly", "[unit]") {
  auto o = small(3, 2000);
  o.faults.slow = 0;
  simulator sim(o);
  const auto port = sim.start();
  auto idle = logged_in(port, "sim0");
  idle.send("i IDLE\r\n");
  REQUIRE(idle.line() == "+ idling\r\n");
  // A client that asks for ~8 MB and never reads: the server's write is stuck on a full socket.
  auto blocked = logged_in(port, "sim1");
  blocked.command("s", "EXAMINE INBOX");
  blocked.send("f UID FETCH 1:* BODY.PEEK[]\r\n");
  // A connection whose greeting is still waiting on its latency timer.
  auto slow_opts = small();
  slow_opts.latency_ms = 60000;
  simulator slow_sim(slow_opts);
  client waiting(slow_sim.start());
  REQUIRE(waiting.connected());
  // The blocked client's request has been read once the server answers the idle client... so
  // make sure the server has processed it: a NOOP on a third connection round-trips after it.
  auto probe = logged_in(port, "sim2");
  REQUIRE(probe.command("n", "NOOP").back().starts_with("n OK"));

  const auto t0 = std::chrono::steady_clock::now();
  sim.stop();
  slow_sim.stop();
  REQUIRE(std::chrono::steady_clock::now() - t0 < 5s);
  REQUIRE(idle.closed_by_server());
  REQUIRE(probe.closed_by_server());
  REQUIRE(waiting.closed_by_server());
  REQUIRE(sim.stats().connections == 0);
  sim.stop();  // idempotent
}

TEST_CASE("commands arriving one byte at a time", "[unit]") {
  simulator sim(small());
  const auto port = sim.start();
  client c(port);
  REQUIRE(c.line());
  const std::string script = "a LOGIN {4+}\r\nsim0 sim\r\nb SELECT \"INBOX\"\r\nc UID FETCH 1,2 (UID)\r\n";
  for (char ch : script) c.send(std::string_view(&ch, 1));
  REQUIRE(c.until_tagged("a").back().starts_with("a OK"));
  REQUIRE(c.until_tagged("b").back().starts_with("b OK"));
  const auto f = c.until_tagged("c");
  REQUIRE(f.size() == 3);
  REQUIRE(f[1] == "* 2 FETCH (UID 2)\r\n");
}

TEST_CASE("BODY[] without PEEK marks the message seen, EXAMINE never does", "[unit]") {
  simulator sim(small(3, 30));
  const auto port = sim.start();
  auto c = logged_in(port, "sim0");
  c.command("e", "EXAMINE INBOX");
  const auto unseen = c.command("u", "UID SEARCH UNSEEN")[0];
  REQUIRE(unseen.size() > 10);  // "* SEARCH n..."
  const auto uid = unseen.substr(9, unseen.find_first_of(" \r", 9) - 9);
  const auto ro = c.command("r", "UID FETCH " + uid + " (BODY[HEADER])");
  REQUIRE(ro[0].find("FLAGS") == std::string::npos);
  REQUIRE(c.command("u2", "UID SEARCH UNSEEN")[0] == unseen);
  c.command("s", "SELECT INBOX");
  const auto rw = c.command("w", "UID FETCH " + uid + " (BODY[HEADER])");
  REQUIRE(rw[0].ends_with(" FLAGS (\\Seen))\r\n"));
  REQUIRE(c.command("u3", "UID SEARCH UNSEEN")[0] != unseen);
}

TEST_CASE("50,000 mailboxes cost nothing until used", "[unit]") {
  auto o = small(50000, 200);
  simulator sim(o);
  const auto port = sim.start();
  client c(port);
  REQUIRE(c.line());
  REQUIRE(c.command("a", "LOGIN sim50000 sim").back().starts_with("a NO"));
  REQUIRE(c.command("b", "LOGIN sim49999 sim").back().starts_with("b OK"));
  REQUIRE(has_line(c.command("s", "EXAMINE INBOX"), "* 200 EXISTS"));
  const auto f = c.command("f", "UID FETCH 200 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
  REQUIRE(f[0].find("<sim49999.200.42@sim.example>") != std::string::npos);
}

TEST_CASE("faulty users depend on the seed, latency delays every response", "[unit]") {
  auto a = small(200, 5);
  a.faults.slow = 0.5;
  auto b = a;
  b.seed = 43;
  simulator sa(a), sb(b);
  std::size_t differ = 0;
  for (std::size_t u = 0; u < 200; ++u) differ += sa.is_slow(u) != sb.is_slow(u);
  REQUIRE(differ > 50);

  auto l = small();
  l.latency_ms = 200;
  simulator sim(l);
  const auto port = sim.start();
  const auto t0 = std::chrono::steady_clock::now();
  client c(port);
  REQUIRE(c.line());
  REQUIRE(std::chrono::steady_clock::now() - t0 >= 200ms);
  const auto t1 = std::chrono::steady_clock::now();
  REQUIRE(c.command("n", "NOOP").back().starts_with("n OK"));
  REQUIRE(std::chrono::steady_clock::now() - t1 >= 200ms);
}

TEST_CASE("folders created by a client take moved mail (rule actions)", "[unit]") {
  simulator sim(small(3, 10));
  const auto port = sim.start();
  auto c = logged_in(port, "sim1");
  REQUIRE(c.command("s", "SELECT INBOX").back().starts_with("s OK"));
  REQUIRE(c.command("m0", "UID MOVE 1 Processed").back().starts_with("m0 NO [TRYCREATE]"));
  REQUIRE(c.command("c", "CREATE Processed").back() == "c OK CREATE completed\r\n");
  REQUIRE(c.command("c2", "CREATE Processed").back().starts_with("c2 NO [ALREADYEXISTS]"));
  REQUIRE(c.command("c3", "CREATE INBOX").back().starts_with("c3 NO [ALREADYEXISTS]"));
  REQUIRE(c.command("c4", "CREATE \"a*b\"").back().starts_with("c4 NO"));
  REQUIRE(c.command("sub", "SUBSCRIBE Processed").back().starts_with("sub OK"));
  const auto mv = c.command("m", "UID MOVE 1:2 Processed");
  REQUIRE(mv.back() == "m OK UID MOVE completed\r\n");
  REQUIRE(has_line(mv, "1:2] Moved"));
  const auto list = c.command("l", "LIST \"\" *");
  REQUIRE(list.size() == 4);
  REQUIRE(list[2] == "* LIST (\\HasNoChildren) \"/\" \"Processed\"\r\n");
  REQUIRE(has_line(c.command("st", "STATUS Processed (MESSAGES UIDNEXT)"), "(MESSAGES 2 UIDNEXT 3)"));
  REQUIRE(has_line(c.command("sp", "SELECT Processed"), "* 2 EXISTS"));
  const auto body = c.command("f", "UID FETCH 2 BODY.PEEK[]");
  REQUIRE(body[0].find(sim.message(1, 2)) != std::string::npos);
  // Another user has no such folder.
  auto other = logged_in(port, "sim2");
  REQUIRE(other.command("s", "SELECT Processed").back().starts_with("s NO [NONEXISTENT]"));
  REQUIRE(other.command("l", "LIST \"\" *").size() == 3);
}

TEST_CASE(".eml files are served byte for byte (CRLF), with their structure and nested parts", "[unit]") {
  const auto dir = std::filesystem::temp_directory_path() / ("mscan-sim-eml-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  struct cleanup {
    std::filesystem::path p;
    ~cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  } rm{dir};
  // LF line ends on disk; a multipart/mixed holding an alternative and an attached message.
  std::ofstream(dir / "a.eml", std::ios::binary)
      << "From: Ann <ann@customer1.example>\nTo: sim0@tenant.example\nSubject: Nested\n"
         "Message-ID: <nested@x.example>\nMIME-Version: 1.0\n"
         "Content-Type: multipart/mixed; boundary=\"outer\"\n\n"
         "preamble\n--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
         "--inner\nContent-Type: text/plain; charset=utf-8\n\nplain text\n"
         "--inner\nContent-Type: text/html\n\n<p>html</p>\n--inner--\n"
         "--outer\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n"
         "From: b@y.example\nSubject: inner\n\ninner body\n--outer--\n";
  std::ofstream(dir / "b.eml", std::ios::binary) << "Subject: plain\r\n\r\nbody\r\n";
  std::ofstream(dir / "notes.txt") << "not served";
  auto o = small(2, 4);
  o.eml_dir = dir.string();
  simulator sim(o);
  const auto port = sim.start();
  REQUIRE(port != 0);
  // Each mailbox holds both files twice over its four uids; which uid is which depends on the seed.
  const auto a = std::string("From: Ann <ann@customer1.example>\r\nTo: sim0@tenant.example\r\n");
  std::uint32_t uid_a = 0;
  for (std::uint32_t u = 1; u <= 4 && !uid_a; ++u)
    if (sim.message(0, u).starts_with(a)) uid_a = u;
  REQUIRE(uid_a != 0);
  const auto full = sim.message(0, uid_a);
  CHECK(full.find('\n') == full.find("\r\n") + 1);
  CHECK(full.find("\n\n") == std::string::npos);
  auto c = logged_in(port, "sim0");
  c.command("s", "EXAMINE INBOX");
  const auto u = std::to_string(uid_a);
  const auto r = c.command("f", "UID FETCH " + u + " (RFC822.SIZE BODYSTRUCTURE)");
  REQUIRE(r.size() == 2);
  CHECK(r[0].find("RFC822.SIZE " + std::to_string(full.size()) + " ") != std::string::npos);
  CHECK(r[0].find("((\"text\" \"plain\" (\"charset\" \"utf-8\")") != std::string::npos);
  CHECK(r[0].find("\"alternative\" (\"boundary\" \"inner\")") != std::string::npos);
  CHECK(r[0].find("(\"message\" \"rfc822\" NIL NIL NIL \"7bit\"") != std::string::npos);
  CHECK(r[0].find("(\"attachment\" NIL)") != std::string::npos);
  // The attached message's ENVELOPE (Sender and Reply-To default to From).
  CHECK(r[0].find("(NIL \"inner\" ((NIL NIL \"b\" \"y.example\")) ((NIL NIL \"b\" \"y.example\")) "
                  "((NIL NIL \"b\" \"y.example\")) NIL NIL NIL NIL NIL)") != std::string::npos);
  CHECK(r[0].find("\"mixed\" (\"boundary\" \"outer\")") != std::string::npos);
  const auto p = c.command("p", "UID FETCH " + u + " (BODY.PEEK[1.2] BODY.PEEK[1.1.MIME] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT])");
  REQUIRE(p.size() == 2);
  CHECK(p[0].find("BODY[1.2] {11}\r\n<p>html</p>") != std::string::npos);
  CHECK(p[0].find("BODY[1.1.MIME] {43}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n") != std::string::npos);
  CHECK(p[0].find("BODY[2.HEADER] {37}\r\nFrom: b@y.example\r\nSubject: inner\r\n\r\n") != std::string::npos);
  // The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
  CHECK(p[0].find("BODY[2.TEXT] {10}\r\ninner body)") != std::string::npos);
  CHECK(c.command("x", "UID FETCH " + u + " (BODY.PEEK[1.X])").back().starts_with("x BAD"));
  CHECK(c.command("y", "UID FETCH " + u + " (BODY.PEEK[9.9])").back().starts_with("y OK"));  // no such part: empty

  // A directory without .eml files is a start-up error that says so.
  auto none = small(1, 1);
  none.eml_dir = (dir / "missing").string();
  simulator bad(none);
  CHECK(bad.start() == 0);
  CHECK(bad.last_error().find("missing") != std::string::npos);
}
