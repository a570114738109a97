#include "tests/support/dovecot_fixture.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAILSCAN_BINARY_DIR
#error "MAILSCAN_BINARY_DIR must be defined by the build"
#endif
#ifndef MAILSCAN_CORPUS_DIR
#error "MAILSCAN_CORPUS_DIR must be defined by the build"
#endif

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace mscan::test {
namespace {

constexpr const char* dovecot_binary = "/usr/sbin/dovecot";
constexpr int start_attempts = 5;  // port races: another process took a port we picked
constexpr auto ready_timeout = 10s;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string errno_text(int err) { return std::system_category().message(err); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes via a temporary file + rename so dovecot never sees a half-written file.
void write_file_atomic(const fs::path& p, std::string_view content, mode_t mode) {
  fs::path tmp = p;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) fail("cannot write " + tmp.string());
  }
  ::chmod(tmp.c_str(), mode);
  fs::rename(tmp, p);
}

std::string base64(std::string_view in) {
  static constexpr char tbl[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < in.size() ? tbl[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::size_t count_occurrences(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return 0;
  std::size_t n = 0;
  for (auto pos = hay.find(needle); pos != std::string_view::npos;
       pos = hay.find(needle, pos + needle.size()))
    ++n;
  return n;
}

std::string tail_lines(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (std::size_t n = 0; n < lines && pos > 0; ++n) {
    auto nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
  }
  return pos == 0 ? text : text.substr(pos + 1);
}

// Runs a helper program (openssl) to completion, output into log_file.
void run_program(const std::vector<std::string>& args, const fs::path& log_file) {
  // Only async-signal-safe calls between fork and exec: resolve the program first.
  std::string program = args[0];
  if (program.find('/') == std::string::npos)
    for (const char* dir : {"/usr/bin/", "/bin/", "/usr/local/bin/"})
      if (::access((dir + args[0]).c_str(), X_OK) == 0) {
        program = dir + args[0];
        break;
      }
  std::vector<char*> argv;
  argv.push_back(program.data());
  for (std::size_t i = 1; i < args.size(); ++i) argv.push_back(const_cast<char*>(args[i].c_str()));
  argv.push_back(nullptr);
  int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) fail("cannot open " + log_file.string() + ": " + errno_text(errno));
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    fail("fork failed: " + errno_text(errno));
  }
  if (pid == 0) {
    int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail(args[0] + " " + args[1] + " failed:\n" + tail_lines(read_file(log_file), 20));
}

struct account_ids {
  uid_t uid;
  gid_t gid;
  std::string user;  // name of the uid
};

account_ids lookup_user(const char* name) {
  passwd* pw = ::getpwnam(name);
  if (pw == nullptr) fail(std::string("system user '") + name + "' does not exist");
  return {pw->pw_uid, pw->pw_gid, pw->pw_name};
}

account_ids current_user() {
  passwd* pw = ::getpwuid(::geteuid());
  if (pw == nullptr) fail("current uid has no passwd entry");
  return {pw->pw_uid, pw->pw_gid, pw->pw_name};
}

// Picks n distinct free loopback ports: all are bound at once, then released for dovecot.
std::vector<std::uint16_t> pick_free_ports(std::size_t n) {
  std::vector<int> fds;
  std::vector<std::uint16_t> ports;
  for (std::size_t i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: " + errno_text(errno));
    fds.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
      for (int f : fds) ::close(f);
      fail("cannot pick a free port: " + errno_text(errno));
    }
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int f : fds) ::close(f);
  return ports;
}

using clock = std::chrono::steady_clock;

int remaining_ms(clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

enum class probe_result { ready, not_yet };

// Connects, waits for a greeting line starting with greeting_prefix, then says goodbye
// politely (logout_command) and waits for the server to close: the probe leaves exactly one
// "Disconnected: Aborted login by logging out" line in the log, never "Connection closed"
// (tests assert that their own clients never just drop connections).
probe_result probe_port(std::uint16_t port, std::string_view greeting_prefix,
                        std::string_view logout_command, clock::time_point deadline) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return probe_result::not_yet;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  // Loopback connect completes (or is refused) immediately.
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    ::close(fd);
    return probe_result::not_yet;
  }
  std::string buf;
  probe_result result = probe_result::not_yet;
  bool greeted = false;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) break;
    char chunk[512];
    auto n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) {
      if (greeted) result = probe_result::ready;  // closed after our logout
      break;
    }
    if (greeted) continue;  // the logout answer; wait for the close
    buf.append(chunk, static_cast<std::size_t>(n));
    // "* OK Waiting for authentication process to respond.." comes before the real greeting.
    for (auto nl = buf.find('\n'); nl != std::string::npos && !greeted; nl = buf.find('\n')) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.starts_with(greeting_prefix)) {
        greeted = true;
        if (::send(fd, logout_command.data(), logout_command.size(), MSG_NOSIGNAL) < 0) break;
      }
    }
  }
  ::close(fd);
  return result;
}

int pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

bool valid_name(std::string_view s) {
  return !s.empty() && s.find_first_of(":/\n\r\0 ", 0, 6) == std::string_view::npos &&
         s != "." && s != "..";
}

}  // namespace

struct dovecot_fixture::impl {
  dovecot_options opts;
  fs::path root_dir;
  fs::path base_dir;      // may live under /tmp when root_dir is too long for unix sockets
  bool base_dir_separate = false;
  fs::path conf_path, log_path, stderr_path, passwd_path;
  std::uint16_t imap = 0, imaps = 0, pop3 = 0, pop3s = 0, auth = 0;
  pid_t child = -1;
  int child_pidfd = -1;
  account_ids mail_ids{}, internal_ids{}, login_ids{};
  bool is_root = false;
  bool subreaper = false;
  mutable std::mutex mu;  // passdb file, user list, message counter
  std::vector<dovecot_user> users;
  std::uint64_t message_seq = 0;
  std::int64_t seed_epoch = 0;

  ~impl() {
    stop();
    if (child_pidfd >= 0) ::close(child_pidfd);
    const char* keep = std::getenv("MAILSCAN_KEEP_TEST_TMP");
    bool keep_all = opts.keep_dir || (keep != nullptr && std::string_view(keep) == "1");
    std::error_code ec;
    if (base_dir_separate) fs::remove_all(base_dir, ec);
    if (!keep_all && !root_dir.empty()) fs::remove_all(root_dir, ec);
  }

  fs::path home(const std::string& user) const { return root_dir / "home" / user; }

  void chown_mail(const fs::path& p) const {
    if (is_root) (void)::lchown(p.c_str(), mail_ids.uid, mail_ids.gid);
  }

  // Creates dir and every missing parent below `from`, chowning each new one to the mail user.
  void make_dirs(const fs::path& from, const fs::path& dir) const {
    fs::path cur = from;
    for (const auto& part : fs::relative(dir, from)) {
      if (part == ".") continue;
      cur /= part;
      if (!fs::exists(cur)) {
        fs::create_directory(cur);
        ::chmod(cur.c_str(), 0700);
        chown_mail(cur);
      }
    }
  }

  void create_home(const std::string& user) const {
    fs::path maildir = home(user) / "Maildir";
    make_dirs(root_dir, maildir);
    for (const char* sub : {"cur", "new", "tmp"}) make_dirs(root_dir, maildir / sub);
    if (opts.rawlog) make_dirs(root_dir, home(user) / "rawlog");
  }

  // Caller holds mu. The file dict format: a key line, then a value line (JSON).
  void write_passwd() {
    std::string text;
    for (const auto& u : users)
      text += "shared/passdb/" + u.name + "\n{\"password\":\"{PLAIN.b64}" + base64(u.password) +
              "\"}\n";
    // A new inode per write: the file dict notices it on the next lookup.
    write_file_atomic(passwd_path, text, 0600);
  }

  void write_dict_auth_conf() const {
    write_file_atomic(root_dir / "dict-auth.conf.ext",
                      "uri = file:" + passwd_path.string() + "\n"
                      "password_key = passdb/%u\n"
                      "iterate_disable = yes\n"
                      "default_pass_scheme = PLAIN\n",
                      0600);
  }

  void make_certificates() const {
    fs::path log = root_dir / "openssl.log";
    auto ec_key = std::vector<std::string>{"-newkey", "ec", "-pkeyopt",
                                           "ec_paramgen_curve:prime256v1", "-nodes"};
    auto make_ca = [&](const std::string& name, const std::string& cn) {
      std::vector<std::string> args{"openssl", "req", "-x509"};
      args.insert(args.end(), ec_key.begin(), ec_key.end());
      for (std::string a : std::vector<std::string>{"-keyout", (root_dir / (name + ".key")).string(), "-out",
                            (root_dir / (name + ".pem")).string(), "-days", "3650", "-subj",
                            "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
                            "-addext", "keyUsage=critical,keyCertSign,cRLSign"})
        args.push_back(a);
      run_program(args, log);
    };
    make_ca("ca", "mailscan test CA " + root_dir.filename().string());
    make_ca("wrong-ca", "mailscan wrong CA " + root_dir.filename().string());
    std::vector<std::string> req{"openssl", "req"};
    req.insert(req.end(), ec_key.begin(), ec_key.end());
    for (std::string a : std::vector<std::string>{"-keyout", (root_dir / "server.key").string(), "-out",
                          (root_dir / "server.csr").string(), "-subj", "/CN=127.0.0.1"})
      req.push_back(a);
    run_program(req, log);
    write_file_atomic(root_dir / "server.ext",
                      "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                      "basicConstraints=CA:FALSE\n"
                      "keyUsage=critical,digitalSignature,keyEncipherment\n"
                      "extendedKeyUsage=serverAuth\n",
                      0600);
    run_program({"openssl", "x509", "-req", "-in", (root_dir / "server.csr").string(), "-CA",
                 (root_dir / "ca.pem").string(), "-CAkey", (root_dir / "ca.key").string(),
                 "-CAcreateserial", "-out", (root_dir / "server.pem").string(), "-days", "3650",
                 "-extfile", (root_dir / "server.ext").string()},
                log);
  }

  std::string config_text() const {
    const std::string r = root_dir.string();
    const std::string maxc = std::to_string(opts.max_connections);
    std::string c;
    c += "# generated by mscan::test::dovecot_fixture\n";
    c += "base_dir = " + base_dir.string() + "\n";
    c += "state_dir = " + r + "/state\n";
    c += "instance_name = mailscan-" + root_dir.filename().string() + "\n";
    c += "log_path = " + log_path.string() + "\n";
    c += "protocols = imap" + std::string(opts.pop3 ? " pop3" : "") + "\n";
    c += "listen = 127.0.0.1\n";
    c += "ssl = yes\n";
    c += "ssl_cert = <" + r + "/server.pem\n";
    c += "ssl_key = <" + r + "/server.key\n";
    c += "default_internal_user = " + internal_ids.user + "\n";
    c += "default_login_user = " + login_ids.user + "\n";
    c += "mail_uid = " + std::to_string(mail_ids.uid) + "\n";
    c += "mail_gid = " + std::to_string(mail_ids.gid) + "\n";
    c += "first_valid_uid = 1\nfirst_valid_gid = 1\n";
    c += "mail_location = maildir:~/Maildir:LAYOUT=fs:UTF-8\n";
    // Seeding writes files behind dovecot's back: no list index that could go stale.
    c += "mailbox_list_index = no\n";
    c += "mail_fsync = never\n";
    c += "auth_mechanisms = " + opts.auth_mechanisms +
         (opts.oauth2_introspection_url.empty() ? "" : " xoauth2 oauthbearer") + "\n";
    c += "disable_plaintext_auth = no\n";
    c += "auth_failure_delay = 0\n";
    c += "auth_cache_size = 0\n";
    c += "login_trusted_networks = 127.0.0.0/8\n";
    c += "mail_max_userip_connections = " + std::to_string(opts.max_userip_connections) + "\n";
    c += "default_process_limit = " + maxc + "\n";
    c += "default_client_limit = 20000\n";
    c += "default_vsz_limit = 0\n";
    c += "verbose_proctitle = yes\n";
    c += "imap_logout_format = mscan_stats in=%i out=%o fetch_hdr_count=%{fetch_hdr_count} "
         "fetch_hdr_bytes=%{fetch_hdr_bytes} fetch_body_count=%{fetch_body_count} "
         "fetch_body_bytes=%{fetch_body_bytes} expunged=%{expunged} appended=%{appended}\n";
    c += "pop3_logout_format = mscan_stats top=%t/%p retr=%r/%b del=%d/%m size=%s\n";
    c += "pop3_uidl_format = %08Xu%08Xv\n";
    if (opts.rawlog) c += "rawlog_dir = %h/rawlog\n";
    // Dovecot's passwd-file driver stats its file at most once per second, so a password
    // changed right after a login would be ignored for up to a second. The dict passdb with
    // a file dict compares the file's inode on every lookup, and we replace the file by
    // rename: every change is seen by the very next login. Homes are static per user name.
    c += "passdb {\n  driver = dict\n  args = " + (root_dir / "dict-auth.conf.ext").string() +
         "\n}\n";
    if (!opts.oauth2_introspection_url.empty()) {
      // After the dict passdb (a token is no password there: result_failure = continue).
      write_file_atomic(root_dir / "dovecot-oauth2.conf.ext",
                        "introspection_mode = post\n"
                        "introspection_url = " + opts.oauth2_introspection_url + "\n"
                        "force_introspection = yes\n"
                        "username_attribute = username\n"
                        "username_format = %d\n"
                        "active_attribute = active\n"
                        "active_value = true\n",
                        0600);
      c += "passdb {\n  driver = oauth2\n  args = " + (root_dir / "dovecot-oauth2.conf.ext").string() + "\n}\n";
    }
    c += "userdb {\n  driver = static\n  args = home=" + r + "/home/%u\n}\n";
    c += "namespace inbox {\n  inbox = yes\n  separator = /\n}\n";
    c += "service imap-login {\n  service_count = 0\n  process_min_avail = " +
         std::to_string(std::min<std::size_t>(2, opts.max_connections)) + "\n";
    c += "  client_limit = " + maxc + "\n";
    c += "  inet_listener imap {\n    port = " + std::to_string(imap) + "\n  }\n";
    c += "  inet_listener imaps {\n    port = " + std::to_string(imaps) + "\n    ssl = yes\n  }\n";
    c += "}\n";
    c += "service imap {\n  process_limit = " + maxc + "\n}\n";
    if (opts.compress) c += "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n";
    if (opts.pop3) {
      c += "service pop3-login {\n  service_count = 0\n  process_min_avail = 1\n";
      c += "  client_limit = " + maxc + "\n";
      c += "  inet_listener pop3 {\n    port = " + std::to_string(pop3) + "\n  }\n";
      c += "  inet_listener pop3s {\n    port = " + std::to_string(pop3s) +
           "\n    ssl = yes\n  }\n";
      c += "}\n";
      c += "service pop3 {\n  process_limit = " + maxc + "\n}\n";
    }
    // auth runs as root (when we are root) so the passdb file can stay 0600.
    c += "service auth {\n  client_limit = 20000\n";
    if (is_root) c += "  user = root\n";
    if (opts.sasl_inet)
      c += "  inet_listener auth-sasl {\n    address = 127.0.0.1\n    port = " + std::to_string(auth) + "\n  }\n";
    c += "}\n";
    c += "service anvil {\n  client_limit = 20000\n";
    // Without the penalty socket the auth process applies no anvil penalty: every test
    // connects from 127.0.0.1, and one wrong password must not slow the next login by 2-15 s.
    if (!opts.auth_penalty) c += "  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n";
    c += "}\n";
    for (const char* s : {"stats", "config"})
      c += std::string("service ") + s + " {\n  client_limit = 20000\n}\n";
    return c;
  }

  void spawn() {
    std::string conf = conf_path.string();
    std::array<char*, 5> argv{const_cast<char*>(dovecot_binary), const_cast<char*>("-F"),
                              const_cast<char*>("-c"), conf.data(), nullptr};
    int err_fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (err_fd < 0) fail("cannot open " + stderr_path.string());
    // Hundreds of sessions need thousands of descriptors in dovecot's processes.
    rlimit files{};
    ::getrlimit(RLIMIT_NOFILE, &files);
    files.rlim_cur = files.rlim_max == RLIM_INFINITY ? 20000 : std::min<rlim_t>(20000, files.rlim_max);
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      ::close(err_fd);
      fail("fork failed: " + errno_text(errno));
    }
    if (pid == 0) {
      // Own process group: the destructor can reap every straggler of THIS instance only.
      ::setpgid(0, 0);
      // Die with the test process even if it crashes before the destructor runs.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      int null_fd = ::open("/dev/null", O_RDONLY);
      ::dup2(null_fd, 0);
      ::dup2(err_fd, 1);
      ::dup2(err_fd, 2);
      // Test sockets must not leak into dovecot (they would stay open after a test closes).
      ::close_range(3, ~0U, 0);
      ::setrlimit(RLIMIT_NOFILE, &files);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(err_fd);
    ::setpgid(pid, pid);  // both sides, so kill(-pid) works whoever runs first
    child = pid;
    child_pidfd = pidfd_open(pid);
  }

  // Waits up to `ms` for the child to exit (without reaping). True if it exited.
  bool wait_child_exit(int ms) const {
    if (child <= 0) return true;
    if (child_pidfd >= 0) {
      pollfd p{child_pidfd, POLLIN, 0};
      return ::poll(&p, 1, ms) > 0;
    }
    // No pidfd (old kernel): bounded polling of waitid without reaping.
    auto deadline = clock::now() + std::chrono::milliseconds(ms);
    do {
      siginfo_t info{};
      if (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == child)
        return true;
      ::usleep(5000);
    } while (clock::now() < deadline);
    return false;
  }

  // SIGKILL to the whole process group: a SIGTERMed master spends ~1 s shutting down, and a
  // test instance has nothing to flush (the log process writes every line as it comes).
  // The group is ours alone: its id is our child's pid, which cannot be reused before we reap
  // it. The master's children are re-parented to us (child subreaper, see the constructor),
  // so reap() collects them too and nothing of this instance lingers.
  void stop() {
    if (child <= 0) return;
    ::kill(-child, SIGKILL);
    ::kill(child, SIGKILL);  // in case setpgid had not happened yet
    reap();
  }

  void reap() {
    pid_t group = child;
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (subreaper) {
      for (;;) {
        pid_t r = ::waitpid(-group, &status, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;  // ECHILD: none of this instance's processes is left
      }
    }
    child = -1;
    if (child_pidfd >= 0) {
      ::close(child_pidfd);
      child_pidfd = -1;
    }
  }

  // True when ready; false when the child died (caller decides whether to retry).
  bool wait_ready() {
    auto deadline = clock::now() + ready_timeout;
    // Only the plain ports: the master binds every listener (imaps, pop3s too) before it
    // starts any service and exits if one fails, so a greeting on the plain port means all
    // listeners are bound and the login process is connected to auth.
    struct probe {
      std::uint16_t port;
      std::string_view greeting, logout;
    };
    std::vector<probe> probes{{imap, "* OK [CAPABILITY", "p LOGOUT\r\n"}};
    if (opts.pop3) probes.push_back({pop3, "+OK", "QUIT\r\n"});
    std::size_t next = 0;
    while (clock::now() < deadline) {
      if (probe_port(probes[next].port, probes[next].greeting, probes[next].logout, deadline) ==
          probe_result::ready) {
        if (++next == probes.size()) return true;
        continue;
      }
      // Not listening yet: wait for the child's exit or a short interval, whichever first.
      if (wait_child_exit(std::min(10, remaining_ms(deadline)))) return false;
      // A broken config often kills only a child (auth) and the master keeps retrying.
      if (read_file(log_path).find(": Fatal: ") != std::string::npos) {
        stop();
        fail("dovecot reported a fatal error while starting:\n" + tail());
      }
    }
    stop();
    fail("dovecot did not become ready within 10 s:\n" + tail());
  }

  std::string tail(std::size_t lines = 50) const {
    std::string out = tail_lines(read_file(log_path), lines);
    std::string err = read_file(stderr_path);
    if (!err.empty()) out += "\n-- dovecot stderr --\n" + tail_lines(err, lines);
    return out;
  }

  void start() {
    for (int attempt = 1;; ++attempt) {
      auto ports = pick_free_ports((opts.pop3 ? 4 : 2) + (opts.sasl_inet ? 1 : 0));
      imap = ports[0];
      imaps = ports[1];
      if (opts.sasl_inet) auth = ports.back();
      if (opts.pop3) {
        pop3 = ports[2];
        pop3s = ports[3];
      }
      write_file_atomic(conf_path, config_text(), 0600);
      spawn();
      if (wait_ready()) return;
      reap();
      std::string log = tail(20);
      bool lost_race = log.find("Address already in use") != std::string::npos;
      if (!lost_race || attempt == start_attempts) fail("dovecot failed to start:\n" + log);
    }
  }
};

dovecot_fixture::dovecot_fixture(dovecot_options options) : impl_(std::make_unique<impl>()) {
  auto& d = *impl_;
  d.opts = std::move(options);
  if (!dovecot_available()) fail(std::string(dovecot_binary) + " is not installed");
  if (d.opts.max_connections == 0) fail("dovecot fixture: max_connections must be at least 1");
  for (const auto& u : d.opts.users) {
    if (!valid_name(u.name)) fail("dovecot fixture: invalid user name '" + u.name + "'");
    if (u.password.find('\n') != std::string::npos) fail("dovecot fixture: password with a newline");
  }
  try {
    fs::path parent = d.opts.parent_dir.empty() ? fs::path(MAILSCAN_BINARY_DIR) / "test-tmp"
                                                : d.opts.parent_dir;
    fs::create_directories(parent);
    std::string templ = (parent / "dovecot.XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr)
      fail("mkdtemp " + templ + ": " + errno_text(errno));
    d.root_dir = templ;
    // The mail user must traverse the fixture root to reach its home.
    ::chmod(d.root_dir.c_str(), 0711);
    d.is_root = ::geteuid() == 0;
    // Dovecot's children outlive a killed master for a moment; as child subreaper this
    // process inherits and reaps them, so stop() can prove the whole instance is gone.
    d.subreaper = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
    if (d.is_root) {
      d.mail_ids = lookup_user("mail");  // dovecot refuses mail access as root
      d.internal_ids = lookup_user("dovecot");
      d.login_ids = lookup_user("dovenull");
    } else {
      d.mail_ids = d.internal_ids = d.login_ids = current_user();
    }
    // Unix socket paths are limited to 108 bytes; dovecot's longest name under base_dir is
    // about 40 bytes.
    d.base_dir = d.root_dir / "run";
    if (d.base_dir.string().size() > 60) {
      std::string t = "/tmp/mscan-dovecot.XXXXXX";
      if (::mkdtemp(t.data()) == nullptr) fail("mkdtemp /tmp: " + errno_text(errno));
      d.base_dir = t;
      d.base_dir_separate = true;
    }
    d.conf_path = d.root_dir / "dovecot.conf";
    d.log_path = d.root_dir / "dovecot.log";
    d.stderr_path = d.root_dir / "dovecot.stderr";
    d.passwd_path = d.root_dir / "passdb.dict";
    d.seed_epoch = static_cast<std::int64_t>(::time(nullptr));
    d.make_certificates();
    d.write_dict_auth_conf();
    fs::create_directories(d.root_dir / "home");
    ::chmod((d.root_dir / "home").c_str(), 0711);
    for (const auto& u : d.opts.users) {
      d.users.push_back(u);
      d.create_home(u.name);
    }
    {
      std::lock_guard lock(d.mu);
      d.write_passwd();
    }
    d.start();
  } catch (const std::exception& e) {
    // Keep the directory of an instance that failed to start: its log and config are the
    // evidence.
    d.opts.keep_dir = !d.root_dir.empty();
    std::string where = d.root_dir.empty() ? "" : "\n(kept for inspection: " + d.root_dir.string() + ")";
    throw std::runtime_error(std::string("dovecot fixture: ") + e.what() + where);
  }
}

dovecot_fixture::~dovecot_fixture() = default;

std::uint16_t dovecot_fixture::imap_port() const { return impl_->imap; }
std::uint16_t dovecot_fixture::imaps_port() const { return impl_->imaps; }
std::uint16_t dovecot_fixture::pop3_port() const { return impl_->pop3; }
std::uint16_t dovecot_fixture::auth_port() const { return impl_->auth; }
std::uint16_t dovecot_fixture::pop3s_port() const { return impl_->pop3s; }
std::string dovecot_fixture::ca_file() const { return (impl_->root_dir / "ca.pem").string(); }
std::string dovecot_fixture::wrong_ca_file() const {
  return (impl_->root_dir / "wrong-ca.pem").string();
}
fs::path dovecot_fixture::root() const { return impl_->root_dir; }
fs::path dovecot_fixture::config_file() const { return impl_->conf_path; }
int dovecot_fixture::pid() const { return impl_->child; }

void dovecot_fixture::add_user(const dovecot_user& user) {
  if (!valid_name(user.name)) fail("invalid user name for the fixture: '" + user.name + "'");
  if (user.password.find('\n') != std::string::npos) fail("password with a newline");
  std::lock_guard lock(impl_->mu);
  auto& users = impl_->users;
  auto it = std::find_if(users.begin(), users.end(),
                         [&](const dovecot_user& u) { return u.name == user.name; });
  if (it != users.end())
    it->password = user.password;
  else
    users.push_back(user);
  impl_->create_home(user.name);
  impl_->write_passwd();
}

void dovecot_fixture::remove_user(const std::string& user) {
  std::lock_guard lock(impl_->mu);
  std::erase_if(impl_->users, [&](const dovecot_user& u) { return u.name == user; });
  impl_->write_passwd();
}

bool dovecot_fixture::kick(const std::string& user) {
  if (impl_->child <= 0 || !valid_name(user)) return false;
  fs::path log = impl_->root_dir / "doveadm.log";
  try {
    run_program({"/usr/bin/doveadm", "-c", impl_->conf_path.string(), "kick", user}, log);
    return true;
  } catch (const std::exception&) {
    return false;  // doveadm exits non-zero when no session of the user was found
  }
}

void dovecot_fixture::stop() { impl_->stop(); }

void dovecot_fixture::set_password(const std::string& user, const std::string& password) {
  if (password.find('\n') != std::string::npos) fail("password with a newline");
  std::lock_guard lock(impl_->mu);
  auto& users = impl_->users;
  auto it = std::find_if(users.begin(), users.end(),
                         [&](const dovecot_user& u) { return u.name == user; });
  if (it == users.end()) fail("set_password: unknown user '" + user + "'");
  it->password = password;
  impl_->write_passwd();
}

fs::path dovecot_fixture::maildir_path(const std::string& user,
                                       const std::string& folder) const {
  if (!valid_name(user)) fail("invalid user name: '" + user + "'");
  fs::path dir = impl_->home(user) / "Maildir";
  std::string upper = folder;
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  if (upper == "INBOX") return dir;
  std::string_view rest = folder;
  while (!rest.empty()) {
    auto slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (part.empty() || part == "." || part == ".." || part == "cur" || part == "new" ||
        part == "tmp" || part.find('\0') != std::string_view::npos)
      fail("folder name not representable in the fixture's Maildir: '" + folder + "'");
    dir /= std::string(part);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (folder.empty()) fail("empty folder name");
  return dir;
}

void dovecot_fixture::seed(const std::string& user, const std::string& folder,
                           std::string_view raw_message, bool seen,
                           std::optional<std::chrono::system_clock::time_point> internal_date) {
  auto& d = *impl_;
  fs::path dir = maildir_path(user, folder);
  std::uint64_t seq;
  {
    std::lock_guard lock(d.mu);
    seq = ++d.message_seq;
    if (!fs::exists(d.home(user) / "Maildir")) d.create_home(user);
    for (const char* sub : {"cur", "new", "tmp"}) d.make_dirs(d.root_dir, dir / sub);
  }
  // One fixed timestamp and a zero-padded sequence: dovecot assigns UIDs to new files in
  // file-name order, so UIDs follow seeding order.
  char name[96];
  std::snprintf(name, sizeof name, "%lld.M%012lluP%d.mscan-fixture",
                static_cast<long long>(d.seed_epoch), static_cast<unsigned long long>(seq),
                static_cast<int>(::getpid()));
  fs::path tmp = dir / "tmp" / name;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(raw_message.data(), static_cast<std::streamsize>(raw_message.size()));
    if (!out) fail("cannot write " + tmp.string());
  }
  ::chmod(tmp.c_str(), 0600);
  if (internal_date) {
    // Maildir has no INTERNALDATE field: dovecot takes the file's mtime.
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                    internal_date->time_since_epoch()).count();
    timespec times[2];
    times[0].tv_sec = static_cast<time_t>(secs);
    times[0].tv_nsec = 0;
    times[1] = times[0];
    ::utimensat(AT_FDCWD, tmp.c_str(), times, 0);
  }
  d.chown_mail(tmp);
  fs::path final_path = seen ? dir / "cur" / (std::string(name) + ":2,S") : dir / "new" / name;
  fs::rename(tmp, final_path);
}

void dovecot_fixture::seed_files(const std::string& user, const std::string& folder,
                                 const std::vector<fs::path>& eml_files) {
  for (const auto& f : eml_files) {
    if (!fs::is_regular_file(f)) fail("seed_files: not a file: " + f.string());
    seed(user, folder, read_file(f), false);
  }
}

void dovecot_fixture::delete_folder(const std::string& user, const std::string& folder) {
  fs::path dir = maildir_path(user, folder);
  std::lock_guard lock(impl_->mu);
  std::error_code ec;
  if (dir == impl_->home(user) / "Maildir") {
    // INBOX is the Maildir root: remove its messages and index, keep the subfolders.
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      auto name = entry.path().filename().string();
      if (name == "cur" || name == "new" || name == "tmp" || name.starts_with("dovecot-uidlist") ||
          name.starts_with("dovecot.index") || name.starts_with("dovecot-keywords"))
        fs::remove_all(entry.path(), ec);
    }
    for (const char* sub : {"cur", "new", "tmp"}) impl_->make_dirs(impl_->root_dir, dir / sub);
    return;
  }
  fs::remove_all(dir, ec);
  if (ec) fail("delete_folder " + folder + ": " + ec.message());
}

std::string dovecot_fixture::log_tail(std::size_t lines) const { return impl_->tail(lines); }

std::size_t dovecot_fixture::count_in_log(std::string_view needle) const {
  return count_occurrences(read_file(impl_->log_path), needle);
}

bool dovecot_fixture::wait_for_log(std::string_view needle, std::size_t count,
                                   std::chrono::milliseconds timeout) const {
  auto deadline = clock::now() + timeout;
  for (;;) {
    if (count_in_log(needle) >= count) return true;
    if (clock::now() >= deadline) return false;
    // Dovecot's log process writes asynchronously; there is no event to wait on but the file.
    if (impl_->wait_child_exit(std::min(10, remaining_ms(deadline))))
      return count_in_log(needle) >= count;
  }
}

imap_session_stats dovecot_fixture::imap_stats(std::string_view user) const {
  imap_session_stats s;
  std::istringstream in(read_file(impl_->log_path));
  std::string prefix = user.empty() ? std::string() : "imap(" + std::string(user) + ")";
  for (std::string line; std::getline(in, line);) {
    auto at = line.find(" mscan_stats ");
    if (at == std::string::npos || line.find("imap(") == std::string::npos) continue;
    if (!prefix.empty() && line.find(prefix) == std::string::npos) continue;
    ++s.sessions;
    std::istringstream fields(line.substr(at + 13));
    for (std::string kv; fields >> kv;) {
      auto eq = kv.find('=');
      if (eq == std::string::npos) continue;
      std::string key = kv.substr(0, eq);
      std::uint64_t v = std::strtoull(kv.c_str() + eq + 1, nullptr, 10);
      if (key == "in") s.bytes_in += v;
      else if (key == "out") s.bytes_out += v;
      else if (key == "fetch_hdr_count") s.fetch_hdr_count += v;
      else if (key == "fetch_hdr_bytes") s.fetch_hdr_bytes += v;
      else if (key == "fetch_body_count") s.fetch_body_count += v;
      else if (key == "fetch_body_bytes") s.fetch_body_bytes += v;
      else if (key == "expunged") s.expunged += v;
      else if (key == "appended") s.appended += v;
    }
  }
  return s;
}

std::size_t dovecot_fixture::count_in_rawlog(std::string_view needle) const {
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(impl_->root_dir / "home", ec)) {
    const auto& p = entry.path();
    if (p.parent_path().filename() == "rawlog" && p.extension() == ".in")
      n += count_occurrences(read_file(p), needle);
  }
  return n;
}

bool dovecot_available() { return ::access(dovecot_binary, X_OK) == 0; }

std::vector<fs::path> corpus_files() {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(MAILSCAN_CORPUS_DIR, ec))
    if (entry.is_regular_file() && entry.path().extension() == ".eml")
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace mscan::test
