#pragma once
// A private, real Postfix (Debian's) for SMTP tests, delivering into a dovecot fixture's
// Maildirs and authenticating against its users (dovecot SASL over loopback TCP: start the
// dovecot fixture with dovecot_options::sasl_inet).
//
// Everything lives in a unique directory under MAILSCAN_BINARY_DIR/test-tmp (config_directory,
// queue_directory, data_directory, log). `postfix -c DIR start-fg` runs as our child in its
// own process group; the destructor stops that group only. Listeners on 127.0.0.1:
// submission_port() (plain + STARTTLS; AUTH only after STARTTLS) and smtps_port() (implicit
// TLS). Only authenticated clients may send; recipients are the virtual domain's users,
// delivered by postfix's virtual(8) into <dovecot home>/<user>/Maildir as the `mail` user.
// The server certificate is self-signed for "localhost" and 127.0.0.1: ca_file() trusts it.
//
// OpenSMTPD 6.8 (Debian 12) fails every TLS handshake with OpenSSL 3 ("EVP lib"), so this
// is Postfix. Needs root (postfix drops privileges to its own users).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace mscan::test {

class dovecot_fixture;

struct postfix_options {
  std::string domain = "acme.example";  // the virtual mailbox domain
  std::vector<std::string> users;       // dovecot users receiving mail as USER@domain
};

class postfix_fixture {
 public:
  postfix_fixture(const dovecot_fixture& dovecot, postfix_options opts);  // throws on failure
  ~postfix_fixture();
  postfix_fixture(const postfix_fixture&) = delete;
  postfix_fixture& operator=(const postfix_fixture&) = delete;

  std::uint16_t submission_port() const;
  std::uint16_t smtps_port() const;
  std::string ca_file() const;
  std::filesystem::path root() const;
  std::string log_tail(std::size_t lines = 40) const;
  void stop();  // later connections are refused

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

bool postfix_available();  // /usr/sbin/postfix exists and we are root

}  // namespace mscan::test
