// mailscan_bench_raw: the bench's baseline IMAP client. No parsing beyond framing, no storage:
// per mailbox a fresh connection, LOGIN, then either
//   fetch:   SELECT INBOX, UID FETCH 1:* BODY.PEEK[]          (full bodies)
//   headers: SELECT INBOX, UID FETCH 1:* BODY.PEEK[HEADER]
//   structure: SELECT INBOX, UID FETCH 1:* with the engine's header-path items (UID FLAGS
//            INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER]): what the server spends
//            on that request, BODYSTRUCTURE making it parse every body
//   status:  STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)      (a no-new-mail poll)
// then LOGOUT. `--connections C` threads take mailboxes from a shared counter, so at most C
// sessions are open at once (the engine's max_connections). Prints one JSON object.
//   mailscan_bench_raw --port P --prefix u --count N [--first 0] [--connections 8]
//                      [--mode fetch|headers|structure|status]  password: env MSCAN_BENCH_PASSWORD
// Loopback only (127.0.0.1). Exit 0 when every mailbox succeeded, 1 otherwise, 2 on usage.
#include "protocols/imap/scan_session.hpp"  // structure_fetch_items only (header-only use)

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct totals {
  std::atomic<std::uint64_t> mailboxes{0}, messages{0}, bytes{0}, errors{0}, commands{0};
};

class conn {
 public:
  explicit conn(int fd) : fd_(fd) {}
  ~conn() { ::close(fd_); }
  conn(const conn&) = delete;
  conn& operator=(const conn&) = delete;

  bool send(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // One line without CRLF; false on EOF/error.
  bool line(std::string& out) {
    out.clear();
    for (;;) {
      for (std::size_t i = pos_; i < len_; ++i) {
        if (buf_[i] == '\n') {
          out.append(buf_ + pos_, i - pos_);
          pos_ = i + 1;
          if (!out.empty() && out.back() == '\r') out.pop_back();
          return true;
        }
      }
      out.append(buf_ + pos_, len_ - pos_);
      pos_ = len_ = 0;
      if (!fill()) return false;
    }
  }
  bool skip(std::uint64_t n) {
    while (n > 0) {
      if (pos_ == len_ && !fill()) return false;
      std::uint64_t take = std::min<std::uint64_t>(n, len_ - pos_);
      pos_ += take;
      n -= take;
    }
    return true;
  }

 private:
  bool fill() {
    pos_ = 0;
    ssize_t n = ::recv(fd_, buf_, sizeof buf_, 0);
    if (n <= 0) {
      len_ = 0;
      return false;
    }
    len_ = static_cast<std::size_t>(n);
    return true;
  }
  int fd_;
  char buf_[1 << 16];
  std::size_t pos_ = 0, len_ = 0;
};

// Reads responses until the tagged one; counts FETCH responses and literal bytes.
bool await(conn& c, const std::string& tag, std::uint64_t& fetches, std::uint64_t& bytes) {
  std::string l;
  for (;;) {
    if (!c.line(l)) return false;
    bool is_fetch = l.size() > 2 && l[0] == '*' && l.find(" FETCH ") != std::string::npos;
    if (is_fetch) ++fetches;
    // A line may carry several literals: "... {n}" CRLF <n bytes> "rest of the line".
    while (!l.empty() && l.back() == '}') {
      auto open = l.rfind('{');
      if (open == std::string::npos) break;
      std::uint64_t n = std::strtoull(l.c_str() + open + 1, nullptr, 10);
      if (!c.skip(n)) return false;
      bytes += n;
      if (!c.line(l)) return false;
    }
    if (l.compare(0, tag.size() + 1, tag + " ") == 0) return l.compare(tag.size() + 1, 2, "OK") == 0;
  }
}

bool one_mailbox(std::uint16_t port, const std::string& user, const std::string& pw,
                 const std::string& mode, totals& t) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  conn c(fd);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
  std::string greeting;
  if (!c.line(greeting) || greeting.rfind("* OK", 0) != 0) return false;
  std::uint64_t fetches = 0, bytes = 0, cmds = 0;
  auto cmd = [&](const std::string& tag, const std::string& text) {
    ++cmds;
    return c.send(tag + " " + text + "\r\n") && await(c, tag, fetches, bytes);
  };
  bool ok = cmd("a", "LOGIN \"" + user + "\" \"" + pw + "\"");
  if (ok && mode == "status") {
    ok = cmd("b", "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)");
  } else if (ok) {
    ok = cmd("b", "SELECT INBOX") &&
         cmd("c", mode == "headers"     ? std::string{"UID FETCH 1:* (BODY.PEEK[HEADER])"}
                  : mode == "structure" ? "UID FETCH 1:* (" + std::string{mscan::imap::structure_fetch_items} + ")"
                                        : std::string{"UID FETCH 1:* (BODY.PEEK[])"});
  }
  if (ok) cmd("z", "LOGOUT");  // the answer does not matter
  t.commands += cmds;
  if (!ok) return false;
  t.messages += fetches;
  t.bytes += bytes;
  return true;
}

double cpu_seconds(int who) {
  rusage r{};
  getrusage(who, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint16_t port = 0;
  std::string prefix = "u", mode = "fetch";
  std::size_t first = 0, count = 0, connections = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--port") port = static_cast<std::uint16_t>(std::stoul(v));
    else if (k == "--prefix") prefix = v;
    else if (k == "--first") first = std::stoul(v);
    else if (k == "--count") count = std::stoul(v);
    else if (k == "--connections") connections = std::stoul(v);
    else if (k == "--mode") mode = v;
    else {
      std::fprintf(stderr, "mailscan_bench_raw: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const char* pw_env = std::getenv("MSCAN_BENCH_PASSWORD");
  if (port == 0 || count == 0 || connections == 0 || !pw_env ||
      (mode != "fetch" && mode != "headers" && mode != "structure" && mode != "status")) {
    std::fprintf(stderr,
                 "usage: MSCAN_BENCH_PASSWORD=... mailscan_bench_raw --port P --count N [--prefix u] "
                 "[--first 0] [--connections 8] [--mode fetch|headers|structure|status]\n");
    return 2;
  }
  const std::string pw = pw_env;
  totals t;
  std::atomic<std::size_t> next{0};
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < std::min(connections, count); ++i)
    threads.emplace_back([&] {
      for (;;) {
        std::size_t k = next++;
        if (k >= count) return;
        if (one_mailbox(port, prefix + std::to_string(first + k), pw, mode, t)) ++t.mailboxes;
        else ++t.errors;
      }
    });
  for (auto& th : threads) th.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "{\"mode\": \"%s\", \"connections\": %zu, \"mailboxes\": %llu, \"errors\": %llu, \"messages\": %llu, "
      "\"bytes\": %llu, \"commands\": %llu, \"seconds\": %.6f, \"cpu_seconds\": %.6f}\n",
      mode.c_str(), connections, static_cast<unsigned long long>(t.mailboxes.load()),
      static_cast<unsigned long long>(t.errors.load()), static_cast<unsigned long long>(t.messages.load()),
      static_cast<unsigned long long>(t.bytes.load()), static_cast<unsigned long long>(t.commands.load()), secs,
      cpu_seconds(RUSAGE_SELF));
  return t.errors.load() == 0 ? 0 : 1;
}
