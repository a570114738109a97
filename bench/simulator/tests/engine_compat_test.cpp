// The engine's own IMAP client (mscan::imap::scan_session, sans-I/O) against the simulator
// over real loopback sockets: proves the simulator speaks what the engine sends, and the
// engine sees exactly the generated content. Bounded waits (run_for), no sleeps.
#include <utility>  // before Asio (TOOLCHAIN.md)

#include <boost/asio.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <thread>
#include <variant>

#include "bench/simulator/message_generator.hpp"
#include "bench/simulator/simulator.hpp"
#include "protocols/imap/scan_session.hpp"
#include "protocols/mime/message.hpp"
#include "tests/support/corpus_structure.hpp"

using namespace mscan;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

struct scan_result {
  std::vector<imap::folder_opened> opened;
  std::map<std::uint32_t, imap::message_fetched> inbox;  // by uid
  std::vector<imap::folder_complete> completed;
  std::optional<imap::error> failed;
  bool complete = false;
  bool timed_out = false;
};

scan_result scan(std::uint16_t port, imap::session_options opts) {
  scan_result r;
  asio::io_context io;
  tcp::socket sock(io);
  sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  imap::scan_session s(std::move(opts));
  std::array<char, 65536> buf;
  for (;;) {
    while (auto out = s.poll()) {
      std::visit(
          [&](auto& o) {
            using T = std::decay_t<decltype(o)>;
            if constexpr (std::is_same_v<T, imap::write_bytes>) {
              asio::write(sock, asio::buffer(o.data));
            } else if constexpr (std::is_same_v<T, imap::folder_opened>) {
              r.opened.push_back(o);
            } else if constexpr (std::is_same_v<T, imap::message_fetched>) {
              if (o.folder == "INBOX") r.inbox[o.uid] = o;
            } else if constexpr (std::is_same_v<T, imap::batch_complete>) {
              s.resume();
            } else if constexpr (std::is_same_v<T, imap::folder_complete>) {
              r.completed.push_back(o);
            } else if constexpr (std::is_same_v<T, imap::scan_complete>) {
              r.complete = true;
            } else if constexpr (std::is_same_v<T, imap::scan_failed>) {
              r.failed = o.err;
            }
          },
          *out);
    }
    if (r.complete || r.failed) return r;
    bool done = false;
    boost::system::error_code ec;
    std::size_t n = 0;
    sock.async_read_some(asio::buffer(buf), [&](boost::system::error_code e, std::size_t k) {
      ec = e;
      n = k;
      done = true;
    });
    io.restart();
    io.run_for(10s);
    if (!done) {
      r.timed_out = true;
      return r;
    }
    if (ec) s.on_eof();
    else s.on_bytes(std::string_view(buf.data(), n));
  }
}

sim::sim_options options(std::size_t messages) {
  sim::sim_options o;
  o.mailboxes = 10;
  o.messages = messages;
  o.seed = 9;
  o.base_time = sim::parse_imap_date("24-Nov-2026");
  return o;
}

imap::session_options login(const std::string& user) {
  imap::session_options o;
  o.username = user;
  o.secret = "sim";
  o.batch_size = 20;
  return o;
}

}  // namespace

TEST_CASE("engine scan of a simulated mailbox sees every generated message", "[unit]") {
  sim::simulator sim(options(50));
  const auto port = sim.start();
  auto o = login("sim3");
  o.fetch = imap::fetch_strategy::whole_message;
  const auto r = scan(port, o);
  REQUIRE_FALSE(r.timed_out);
  REQUIRE_FALSE(r.failed);
  REQUIRE(r.complete);
  REQUIRE(r.opened.size() == 2);  // INBOX and Sent from LIST "" "*"
  REQUIRE(r.opened[0].folder == "INBOX");
  REQUIRE(r.opened[0].exists == 50);
  REQUIRE(r.opened[0].uidnext == 51);
  REQUIRE(r.opened[1].special_use == "\\Sent");
  REQUIRE(r.inbox.size() == 50);
  for (const auto& [uid, m] : r.inbox) {
    REQUIRE(m.raw == sim.message(3, uid));
    REQUIRE(m.size == m.raw.size());
    REQUIRE_FALSE(m.truncated);
  }
  REQUIRE(r.inbox.at(50).internaldate == sim::parse_imap_date("24-Nov-2026"));
  REQUIRE(sim.stats().logins == 1);
}

TEST_CASE("engine structure fetch: text parts in full, the PDF as a stub", "[unit]") {
  sim::simulator sim(options(20));
  const auto port = sim.start();
  auto o = login("sim4");
  o.folders = {"INBOX"};
  o.fetch = imap::fetch_strategy::structure;
  const auto r = scan(port, o);
  REQUIRE(r.complete);
  REQUIRE(r.inbox.size() == 20);
  for (const auto& [uid, m] : r.inbox) {
    const auto full = sim.message(4, uid);
    REQUIRE(m.size == full.size());
    if (uid % 10 != 0) {
      REQUIRE(m.raw == full);  // single text part: header + text is the message
      REQUIRE(m.attachments.empty());
      continue;
    }
    // multipart: same header, the text part with its own MIME header, the PDF as a stub.
    const auto header_end = full.find("\r\n\r\n") + 4;
    REQUIRE(m.raw.substr(0, header_end) == full.substr(0, header_end));
    REQUIRE(m.raw.find("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\nHello sim4,") !=
            std::string::npos);
    const auto regards = full.find("Regards,");
    REQUIRE(m.raw.find(full.substr(header_end + 200, regards - header_end - 200)) != std::string::npos);
    REQUIRE(m.attachments.size() == 1);
    REQUIRE(m.attachments[0].name == "quote-" + std::to_string(uid) + ".pdf");
    REQUIRE(m.attachments[0].type == "application/pdf");
    REQUIRE(m.attachments[0].disposition == "attachment");
    REQUIRE(m.attachments[0].section == "2");
  }
}

TEST_CASE("engine resumes from a checkpoint and windows by date", "[unit]") {
  sim::simulator sim(options(50));
  const auto port = sim.start();
  auto o = login("sim1");
  o.folders = {"INBOX"};
  o.checkpoints["INBOX"] = imap::folder_checkpoint{0, 0, 0};
  // UIDVALIDITY from a first scan, then a checkpoint at uid 45.
  const auto first = scan(port, o);
  REQUIRE(first.complete);
  o.checkpoints["INBOX"] = imap::folder_checkpoint{first.opened[0].uidvalidity, 45, 0};
  const auto second = scan(port, o);
  REQUIRE(second.complete);
  REQUIRE(second.inbox.size() == 5);
  REQUIRE(second.inbox.begin()->first == 46);
  // 50 messages 4.8 h apart ending at midnight 24-Nov: uid 45 is at midnight 23-Nov.
  auto w = login("sim1");
  w.folders = {"INBOX"};
  w.since_unix = sim::parse_imap_date("23-Nov-2026");
  const auto windowed = scan(port, w);
  REQUIRE(windowed.complete);
  REQUIRE(windowed.inbox.size() == 6);
  REQUIRE(windowed.inbox.begin()->first == 45);
}

TEST_CASE("engine fetches large messages as header plus the start of the text", "[unit]") {
  sim::simulator sim(options(10));
  const auto port = sim.start();
  auto o = login("sim2");
  o.folders = {"INBOX"};
  o.max_message_bytes = 1000;
  o.fetch = imap::fetch_strategy::whole_message;
  const auto r = scan(port, o);
  REQUIRE(r.complete);
  REQUIRE(r.inbox.size() == 10);
  for (const auto& [uid, m] : r.inbox) {
    const auto full = sim.message(2, uid);
    REQUIRE(m.truncated);
    REQUIRE(m.size == full.size());
    REQUIRE(full.starts_with(m.raw));
  }
}

TEST_CASE("engine classifies the simulator's faults", "[unit]") {
  SECTION("wrong password") {
    auto o = options(5);
    o.faults.wrong_password = 1;
    sim::simulator sim(o);
    const auto r = scan(sim.start(), login("sim0"));
    REQUIRE(r.failed);
    REQUIRE(r.failed->kind == imap::error_kind::login_failed);
  }
  SECTION("disconnect mid fetch") {
    auto o = options(5);
    o.faults.disconnect_mid_fetch = 1;
    sim::simulator sim(o);
    const auto r = scan(sim.start(), login("sim0"));
    REQUIRE(r.failed);
    REQUIRE(r.inbox.empty());
  }
  SECTION("uidvalidity reset") {
    auto o = options(5);
    o.faults.uidvalidity_reset = 1;
    sim::simulator sim(o);
    const auto port = sim.start();
    auto l = login("sim0");
    l.folders = {"INBOX"};
    const auto first = scan(port, l);
    REQUIRE(first.complete);
    l.checkpoints["INBOX"] = imap::folder_checkpoint{first.opened[0].uidvalidity, 5, 0};
    const auto second = scan(port, l);
    REQUIRE(second.complete);
    REQUIRE(second.opened[0].uidvalidity_changed);
    REQUIRE(second.inbox.size() == 5);  // a changed UIDVALIDITY means rescanning everything
  }
}

TEST_CASE("engine: an unchanged second scan costs STATUS (or LIST-STATUS) and LOGOUT after login", "[unit]") {
  sim::simulator sim(options(30));
  const auto port = sim.start();
  for (const bool every_folder : {false, true}) {
    INFO("every folder " << every_folder);
    auto o = login("sim3");
    if (!every_folder) o.folders = {"INBOX"};
    const auto first = scan(port, o);
    REQUIRE(first.complete);
    for (const auto& c : first.completed)
      o.checkpoints[c.folder] = imap::folder_checkpoint{c.uidvalidity, c.highest_uid, c.highest_modseq};
    // scan() returns once LOGOUT is written: wait until the simulator has counted it.
    const auto logouts = [&] {
      const auto c = sim.stats().commands;
      return c.count("LOGOUT") ? c.at("LOGOUT") : std::size_t{0};
    };
    const auto settled = [&](std::size_t n) {
      for (auto end = std::chrono::steady_clock::now() + 5s; logouts() < n && std::chrono::steady_clock::now() < end;)
        std::this_thread::sleep_for(1ms);
      return logouts() >= n;
    };
    const auto runs = every_folder ? 3u : 1u;  // scans of this test so far
    REQUIRE(settled(runs));
    const auto before = sim.stats().commands;
    const auto second = scan(port, o);
    REQUIRE(second.complete);
    CHECK(second.opened.empty());
    CHECK(second.inbox.empty());
    REQUIRE(settled(runs + 1));
    auto after = sim.stats().commands;
    std::size_t post_login = 0;
    for (const auto& [name, n] : after) {
      const auto was = before.count(name) ? before.at(name) : 0;
      if (name != "LOGIN" && name != "AUTHENTICATE" && name != "ID") post_login += n - was;
      if (n != was) UNSCOPED_INFO(name << " +" << n - was);
    }
    CHECK(post_login == 2);
    const auto opened = [&](const char* name) { return after[name] - (before.count(name) ? before.at(name) : 0); };
    CHECK(opened("SELECT") + opened("EXAMINE") + opened("SEARCH") + opened("FETCH") == 0);
    CHECK(opened(every_folder ? "LIST" : "STATUS") == 1);
  }
}

TEST_CASE("engine scan of the real corpus served as .eml files: whole, text path and header path agree", "[unit]") {
  // One mailbox holding every file of ../shared/corpus/real once (messages = files).
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(MAILSCAN_CORPUS_DIR))
    if (e.path().extension() == ".eml") names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  const auto files = names.size();
  REQUIRE(files > 100);
  const auto& structure_differs = test::corpus_structure_differs();  // malformed MIME, split otherwise
  auto so = options(files);
  so.mailboxes = 1;
  so.eml_dir = MAILSCAN_CORPUS_DIR;
  sim::simulator sim(so);
  const auto port = sim.start();
  REQUIRE(port != 0);
  auto o = login("sim0");
  o.folders = {"INBOX"};
  o.fetch = imap::fetch_strategy::whole_message;
  const auto whole = scan(port, o);
  o.fetch = imap::fetch_strategy::structure;
  const auto text = scan(port, o);
  o.fetch_text = false;
  const auto headers = scan(port, o);
  for (const auto* r : {&whole, &text, &headers}) {
    REQUIRE_FALSE(r->timed_out);
    REQUIRE_FALSE(r->failed);
    REQUIRE(r->complete);
    REQUIRE(r->inbox.size() == files);
  }
  std::set<std::string> distinct;
  auto emails = [](const std::vector<mime::address>& v) {
    std::string out;
    for (const auto& a : v) out += a.email + ",";
    return out;
  };
  for (const auto& [uid, w] : whole.inbox) {
    const auto served = sim.message(0, uid);
    const auto& name = names[(sim::mix(so.seed, 0, 0xe31) + uid - 1) % files];  // sim_options::eml_dir
    INFO("uid " << uid << ": " << name);
    REQUIRE(w.raw == served);
    distinct.insert(served);
    const auto full = mime::parse_message(w.raw);
    for (const auto* r : {&text, &headers}) {
      const auto& m = r->inbox.at(uid);
      CHECK(m.size == served.size());
      const auto p = mime::parse_message(m.raw);
      CHECK(p.message_id == full.message_id);
      CHECK(p.subject == full.subject);
      CHECK(p.date == full.date);
      CHECK(emails(p.from) == emails(full.from));
      CHECK(emails(p.to) == emails(full.to));
      if (!structure_differs.count(name))
        CHECK(p.attachments.empty() == full.attachments.empty());
    }
  }
  CHECK(distinct.size() == files);  // every file, once
}
