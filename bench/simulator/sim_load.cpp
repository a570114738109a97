// mailscan_sim_load: measures the simulator itself. Runs an in-process simulator and C
// concurrent client sessions (C++20 coroutines on the main thread); each session takes the
// next mailbox, LOGINs, EXAMINEs INBOX, fetches every message and LOGOUTs. Prints one JSON
// line: mailboxes/s, messages/s, MB/s, the simulator thread's CPU per message, and RSS.
#include <utility>  // before Asio (TOOLCHAIN.md)

#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "bench/simulator/command_framer.hpp"
#include "bench/simulator/simulator.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::use_awaitable;

namespace {

struct load_state {
  std::size_t next_mailbox = 0;
  std::size_t mailboxes = 0;
  std::size_t messages = 0;
  std::size_t bytes = 0;
  std::size_t errors = 0;
};

long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  return -1;
}

asio::awaitable<void> session(tcp::endpoint ep, load_state& st, std::string items) {
  tcp::socket s(co_await asio::this_coro::executor);
  co_await s.async_connect(ep, use_awaitable);
  std::string buf;
  mscan::sim::command_framer framer(1 << 20, 1 << 26);
  std::array<char, 65536> tmp;
  auto read_line = [&]() -> asio::awaitable<std::string> {
    for (;;) {
      const auto f = framer.next(buf);
      if (f.what == mscan::sim::frame::kind::complete) {
        std::string l = buf.substr(0, f.length);
        buf.erase(0, f.length);
        co_return l;
      }
      const auto n = co_await s.async_read_some(asio::buffer(tmp), use_awaitable);
      buf.append(tmp.data(), n);
      st.bytes += n;
    }
  };
  auto command = [&](std::string text) -> asio::awaitable<std::size_t> {
    co_await asio::async_write(s, asio::buffer(text), use_awaitable);
    std::size_t fetched = 0;
    for (;;) {
      const auto l = co_await read_line();
      if (l.starts_with("t ")) {
        if (!l.starts_with("t OK")) ++st.errors;
        co_return fetched;
      }
      fetched += l.starts_with("* ") && l.find(" FETCH (") != std::string::npos;
    }
  };
  co_await read_line();  // greeting
  while (st.next_mailbox < st.mailboxes) {
    const auto user = st.next_mailbox++;
    co_await command(fmt::format("t LOGIN sim{} sim\r\n", user));
    co_await command("t EXAMINE INBOX\r\n");
    st.messages += co_await command(fmt::format("t UID FETCH 1:* ({})\r\n", items));
    co_await command("t UNSELECT\r\n");
    // One connection per mailbox, like the engine: LOGOUT, then reconnect.
    co_await command("t LOGOUT\r\n");
    s.close();
    if (st.next_mailbox >= st.mailboxes) break;
    buf.clear();
    framer = mscan::sim::command_framer(1 << 20, 1 << 26);
    co_await s.async_connect(ep, use_awaitable);
    co_await read_line();
  }
}

}  // namespace

int main(int argc, char** argv) {
  mscan::sim::sim_options o;
  o.mailboxes = 1000;
  o.messages = 100;
  o.max_connections = 100000;
  std::size_t connections = 16;
  std::string mode = "headers";
  std::uint16_t external_port = 0;  // --connect PORT: load an already running simulator
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--mailboxes") o.mailboxes = std::stoul(v);
    else if (k == "--messages") o.messages = std::stoul(v);
    else if (k == "--message-bytes") o.message_bytes = std::stoul(v);
    else if (k == "--connections") connections = std::stoul(v);
    else if (k == "--mode") mode = v;
    else if (k == "--connect") external_port = static_cast<std::uint16_t>(std::stoul(v));
    else {
      fmt::print(stderr, "usage: {} [--mailboxes N] [--messages M] [--message-bytes B] "
                 "[--connections C] [--mode headers|bodies] [--connect PORT]\n", argv[0]);
      return 2;
    }
  }
  const std::string items = mode == "bodies" ? "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]"
                                             : "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER]";
  const long rss0 = rss_kib();
  mscan::sim::simulator sim(o);
  const auto port = external_port ? external_port : sim.start();
  if (port == 0) {
    fmt::print(stderr, "mailscan_sim_load: {}\n", sim.last_error());
    return 1;
  }
  load_state st;
  st.mailboxes = o.mailboxes;
  asio::io_context io(1);
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  bool failed = false;
  for (std::size_t i = 0; i < connections; ++i)
    asio::co_spawn(io, session(ep, st, items), [&](std::exception_ptr e) { failed = failed || e; });
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = sim.stats().cpu_seconds;
  io.run();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto stats = sim.stats();
  const long rss1 = rss_kib();
  sim.stop();
  nlohmann::json j;
  j["mode"] = mode;
  j["mailboxes"] = o.mailboxes;
  j["messages_per_mailbox"] = o.messages;
  j["connections"] = connections;
  j["seconds"] = secs;
  j["mailboxes_per_s"] = static_cast<double>(o.mailboxes) / secs;
  j["messages_per_s"] = static_cast<double>(st.messages) / secs;
  j["mb_per_s"] = static_cast<double>(st.bytes) / secs / 1e6;
  j["sim_cpu_s"] = stats.cpu_seconds - cpu0;
  j["sim_cpu_us_per_message"] = st.messages ? (stats.cpu_seconds - cpu0) * 1e6 / static_cast<double>(st.messages) : 0;
  j["messages"] = st.messages;
  j["errors"] = st.errors;
  j["failed_sessions"] = failed;
  j["rss_growth_kib"] = rss1 - rss0;
  j["peak_connections"] = stats.peak_connections;
  fmt::print("{}\n", j.dump());
  return failed || st.errors ? 1 : 0;
}
