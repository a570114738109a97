#include "tests/support/postfix_fixture.hpp"

#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace mscan::test {

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("postfix_fixture: " + what); }

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) fail("cannot write " + p.string());
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs a command (no shell) to completion; its output goes to `log`.
int run(const std::vector<std::string>& args, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::close_range(3, ~0U, 0);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

std::vector<std::uint16_t> free_ports(std::size_t n) {
  std::vector<int> fds;
  std::vector<std::uint16_t> out;
  for (std::size_t i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) < 0)
      fail("cannot pick a free port");
    fds.push_back(fd);
    out.push_back(ntohs(a.sin_port));
  }
  for (int fd : fds) ::close(fd);
  return out;
}

// True once the port answers with an SMTP greeting.
bool greets(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    char buf[64];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    ok = n >= 3 && std::string_view(buf, 3) == "220";
    (void)::send(fd, "QUIT\r\n", 6, MSG_NOSIGNAL);
  }
  ::close(fd);
  return ok;
}

} // namespace

bool postfix_available() { return ::geteuid() == 0 && fs::exists("/usr/sbin/postfix"); }

struct postfix_fixture::impl {
  fs::path dir;
  std::uint16_t submission = 0, smtps = 0;
  pid_t child = -1;

  void stop() {
    if (child <= 0) return;
    (void)run({"/usr/sbin/postfix", "-c", (dir / "conf").string(), "stop"}, dir / "control.log");
    ::kill(-child, SIGTERM);
    for (int i = 0; i < 100; ++i) {  // bounded: 5 s
      int st = 0;
      if (::waitpid(child, &st, WNOHANG) == child) {
        child = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling a child's exit
    }
    if (child > 0) {
      ::kill(-child, SIGKILL);
      ::waitpid(child, nullptr, 0);
      child = -1;
    }
  }
};

postfix_fixture::postfix_fixture(const dovecot_fixture& dovecot, postfix_options opts)
  : impl_(std::make_unique<impl>()) {
  if (!postfix_available()) fail("postfix is not installed or we are not root");
  auto& d = *impl_;
  d.dir = unique_test_dir("postfix");
  // mkdtemp makes it 0700; postfix's own users must reach their queue and data below it.
  fs::permissions(d.dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec);
  const auto conf = d.dir / "conf";
  fs::create_directories(conf);
  fs::create_directories(d.dir / "queue");
  fs::create_directories(d.dir / "data");
  // getpwnam's result lives in a static buffer: copy the ids before the next call.
  struct ids { uid_t pw_uid; gid_t pw_gid; };
  auto lookup = [](const char* name) {
    const passwd* p = ::getpwnam(name);
    if (!p) fail(std::string("system user ") + name + " is missing");
    return ids{p->pw_uid, p->pw_gid};
  };
  const ids mail_ids = lookup("mail"), pf_ids = lookup("postfix");
  const ids* mail = &mail_ids;
  if (::chown((d.dir / "data").c_str(), pf_ids.pw_uid, pf_ids.pw_gid) != 0) fail("chown data");
  const auto home = dovecot.root() / "home";
  std::string vmailbox;
  for (auto& u : opts.users) {
    for (auto sub : {"cur", "new", "tmp"}) fs::create_directories(home / u / "Maildir" / sub);
    for (auto p : {home / u, home / u / "Maildir", home / u / "Maildir" / "cur", home / u / "Maildir" / "new",
                   home / u / "Maildir" / "tmp"})
      if (::chown(p.c_str(), mail->pw_uid, mail->pw_gid) != 0) fail("chown " + p.string());
    vmailbox += u + "@" + opts.domain + " " + u + "/Maildir/\n";
  }
  write_file(conf / "vmailbox", vmailbox);
  const auto cert = conf / "cert.pem", key = conf / "key.pem";
  if (run({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", key.string(), "-out", cert.string(), "-days", "2", "-subj", "/CN=localhost", "-addext",
           "subjectAltName=DNS:localhost,IP:127.0.0.1"},
          d.dir / "openssl.log") != 0)
    fail("openssl could not make a certificate: " + read_file(d.dir / "openssl.log"));
  auto ports = free_ports(2);
  d.submission = ports[0];
  d.smtps = ports[1];
  const auto dir = d.dir.string();
  std::ostringstream mc;
  mc << "compatibility_level = 3.6\n"
     << "queue_directory = " << dir << "/queue\n"
     << "data_directory = " << dir << "/data\n"
     << "command_directory = /usr/sbin\ndaemon_directory = /usr/lib/postfix/sbin\n"
     << "shlib_directory = /usr/lib/postfix\nmeta_directory = /etc/postfix\n"
     << "mail_owner = postfix\nsetgid_group = postdrop\n"
     << "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
     << "myhostname = localhost\nmydomain = localdomain\nmydestination =\nmynetworks = 127.0.0.0/8\n"
     << "relay_domains =\nalias_maps =\nalias_database =\nlocal_recipient_maps =\n"
     << "virtual_mailbox_domains = " << opts.domain << "\n"
     << "virtual_mailbox_base = " << home.string() << "\n"
     << "virtual_mailbox_maps = texthash:" << (conf / "vmailbox").string() << "\n"
     << "virtual_minimum_uid = 1\n"  // the mail user (uid 8) owns dovecot's Maildirs
     << "virtual_uid_maps = static:" << mail->pw_uid << "\nvirtual_gid_maps = static:" << mail->pw_gid << "\n"
     << "smtpd_tls_cert_file = " << cert.string() << "\nsmtpd_tls_key_file = " << key.string() << "\n"
     << "smtpd_tls_security_level = may\nsmtpd_tls_auth_only = yes\n"
     << "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
     << "smtpd_sasl_path = inet:127.0.0.1:" << dovecot.auth_port() << "\n"
     << "smtpd_relay_restrictions = permit_sasl_authenticated, reject\n"
     << "smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n"
     << "maillog_file = " << dir << "/postfix.log\nmaillog_file_prefixes = " << dir << "\n";
  write_file(conf / "main.cf", mc.str());
  std::ostringstream ms;
  ms << "127.0.0.1:" << d.submission << " inet n - n - - smtpd\n"
     << "127.0.0.1:" << d.smtps << " inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n";
  for (const char* line : {"pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup",
                           "qmgr unix n - n 300 1 qmgr", "rewrite unix - - n - - trivial-rewrite",
                           "bounce unix - - n - 0 bounce", "defer unix - - n - 0 bounce",
                           "trace unix - - n - 0 bounce", "verify unix - - n - 1 verify",
                           "flush unix n - n 1000? 0 flush", "proxymap unix - - n - - proxymap",
                           "smtp unix - - n - - smtp", "showq unix n - n - - showq", "error unix - - n - - error",
                           "retry unix - - n - - error", "discard unix - - n - - discard",
                           "virtual unix - n n - - virtual", "anvil unix - - n - 1 anvil",
                           "scache unix - - n - 1 scache", "postlog unix-dgram n - n - 1 postlogd",
                           "tlsmgr unix - - n 1000? 1 tlsmgr"})
    ms << line << "\n";
  write_file(conf / "master.cf", ms.str());
  if (run({"/usr/sbin/postfix", "-c", conf.string(), "check"}, d.dir / "control.log") != 0)
    fail("postfix check failed: " + read_file(d.dir / "control.log"));

  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    int fd = ::open((d.dir / "master.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::close_range(3, ~0U, 0);
    ::execl("/usr/sbin/postfix", "postfix", "-c", conf.c_str(), "start-fg", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  d.child = pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!greets(d.submission)) {
    if (std::chrono::steady_clock::now() > deadline || ::waitpid(pid, nullptr, WNOHANG) == pid) {
      d.child = -1;
      auto tail = log_tail();
      fail("postfix did not start:\n" + tail + read_file(d.dir / "master.log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling readiness, bounded
  }
}

postfix_fixture::~postfix_fixture() {
  try {
    impl_->stop();
  } catch (...) {
  }
}

std::uint16_t postfix_fixture::submission_port() const { return impl_->submission; }
std::uint16_t postfix_fixture::smtps_port() const { return impl_->smtps; }
std::string postfix_fixture::ca_file() const { return (impl_->dir / "conf" / "cert.pem").string(); }
fs::path postfix_fixture::root() const { return impl_->dir; }
void postfix_fixture::stop() { impl_->stop(); }

std::string postfix_fixture::log_tail(std::size_t lines) const {
  auto text = read_file(impl_->dir / "postfix.log");
  std::size_t pos = text.size(), n = 0;
  while (pos > 0 && n <= lines) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      pos = 0;
      break;
    }
    ++n;
  }
  return text.substr(pos);
}

}  // namespace mscan::test
