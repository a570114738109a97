#include "tests/support/login_storm.hpp"

#include <utility>  // before Asio: Boost 1.74 + g++ 12 (TOOLCHAIN.md)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <list>

namespace mscan::test {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using asio::awaitable;

std::string imap_quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

struct storm {
  asio::io_context io{1};
  asio::steady_timer barrier{io, asio::steady_timer::time_point::max()};
  std::list<tcp::socket> sockets;
  std::size_t total = 0, arrived = 0;
  login_storm_result result;

  void note_error(std::string e) {
    if (result.errors.size() < 8) result.errors.push_back(std::move(e));
  }

  void arrive() {
    if (++arrived == total) barrier.cancel();
  }

  // Reads one CRLF line (no literals expected in these responses).
  static awaitable<std::string> read_line(tcp::socket& s, std::string& buf, error_code& ec) {
    std::size_t n = co_await asio::async_read_until(s, asio::dynamic_buffer(buf), "\r\n",
                                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return std::string();
    std::string line = buf.substr(0, n - 2);
    buf.erase(0, n);
    co_return line;
  }

  // Reads until the line tagged `tag`; returns it (empty on error).
  static awaitable<std::string> read_tagged(tcp::socket& s, std::string& buf,
                                            std::string_view tag, error_code& ec) {
    for (;;) {
      std::string line = co_await read_line(s, buf, ec);
      if (ec) co_return std::string();
      if (line.starts_with(tag) && line.size() > tag.size() && line[tag.size()] == ' ')
        co_return line;
    }
  }

  awaitable<bool> login(tcp::socket& s, std::string& buf, const dovecot_user& u,
                        std::uint16_t port) {
    error_code ec;
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    co_await s.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      note_error("connect: " + ec.message());
      co_return false;
    }
    for (;;) {  // "* OK Waiting for authentication process..." may precede the greeting
      std::string line = co_await read_line(s, buf, ec);
      if (ec) {
        note_error("greeting: " + ec.message());
        co_return false;
      }
      if (line.starts_with("* OK") && line.find("Waiting for auth") == std::string::npos) break;
      if (line.starts_with("* BYE")) {
        note_error("greeting: " + line);
        co_return false;
      }
    }
    ++result.connected;
    std::string cmd = "l LOGIN " + imap_quoted(u.name) + " " + imap_quoted(u.password) + "\r\n";
    co_await asio::async_write(s, asio::buffer(cmd), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      note_error("write LOGIN: " + ec.message());
      co_return false;
    }
    std::string tagged = co_await read_tagged(s, buf, "l", ec);
    if (ec) {
      note_error("LOGIN response: " + ec.message());
      co_return false;
    }
    if (tagged.starts_with("l OK")) {
      ++result.logged_in;
      co_return true;
    }
    ++result.rejected;
    note_error("LOGIN " + u.name + ": " + tagged);
    co_return false;
  }

  awaitable<void> session(tcp::socket& s, const dovecot_user& u, std::uint16_t port) {
    std::string buf;
    bool ok = co_await login(s, buf, u, port);
    arrive();
    if (arrived < total) {
      error_code ec;
      co_await barrier.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ok || result.timed_out) co_return;
    error_code ec;
    static const std::string logout = "o LOGOUT\r\n";
    co_await asio::async_write(s, asio::buffer(logout),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      std::string tagged = co_await read_tagged(s, buf, "o", ec);
      if (!ec && tagged.starts_with("o OK")) ++result.logged_out;
    }
    s.close(ec);
  }
};

}  // namespace

login_storm_result concurrent_logins(std::uint16_t port, const std::vector<dovecot_user>& users,
                                     std::size_t connections,
                                     std::chrono::milliseconds timeout) {
  storm st;
  if (users.empty() || connections == 0) return st.result;
  auto start = std::chrono::steady_clock::now();
  st.total = connections;
  try {
    asio::steady_timer deadline(st.io, timeout);
    deadline.async_wait([&](error_code ec) {
      if (ec) return;  // cancelled: everything finished in time
      st.result.timed_out = true;
      error_code ignored;
      for (auto& s : st.sockets) s.close(ignored);
      st.barrier.cancel();
    });
    std::size_t running = connections;
    for (std::size_t i = 0; i < connections; ++i) {
      auto& s = st.sockets.emplace_back(st.io);
      asio::co_spawn(st.io, st.session(s, users[i % users.size()], port),
                     [&](std::exception_ptr e) {
                       if (e) st.note_error("session threw");
                       if (--running == 0) deadline.cancel();
                     });
    }
    st.io.run();
  } catch (const std::exception& e) {
    st.note_error(std::string("storm: ") + e.what());
  }
  st.result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  return st.result;
}

}  // namespace mscan::test
