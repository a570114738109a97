#pragma once
// The sans-I/O SMTP submission client: one connection, any number of messages, QUIT. The
// owner feeds it the server's bytes and carries out what poll() returns (write, STARTTLS);
// it never touches a socket, a timer or a thread.
//
//   greeting 220 --> EHLO --(250 + capabilities)--+--> [STARTTLS -> 220 -> start_tls ->
//      |               |                          |     on_tls_established -> EHLO again]
//      |               +--(5xx, nothing needed)--> HELO                   |
//      v                                          v                       v
//   failed          [AUTH PLAIN | LOGIN | XOAUTH2]  (when a username is configured)
//                                  |
//                                  v
//   +--> MAIL FROM --> RCPT TO ... --> DATA --354--> dot-stuffed body "." --250--> message_sent
//   |      (with PIPELINING: MAIL, every RCPT and DATA in one write)       \--4xx/5xx--> message_failed
//   +---------------------------- next message (RSET first after a failure)
//                                  v
//                                QUIT --> session_done
//
// No downgrade: with `starttls` set, a server that does not offer STARTTLS, or refuses it,
// ends the session (starttls_unavailable) before any credential or message is sent; bytes
// that arrive after the 220 to STARTTLS and before the handshake are refused (command
// injection ahead of TLS). Capabilities seen before TLS are forgotten.
//
// Errors are classified into the reason codes of INTERFACE.md where they apply (login_failed,
// auth_method_unsupported, starttls_unavailable, throttled for 421/450/451/452/454,
// server_bye, protocol_error) plus two SMTP ones for a message the server will never take:
// recipient_rejected and message_rejected. `permanent` says whether resending can help.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocols/smtp/reply_parser.hpp"

namespace mscan::smtp {

enum class error_kind { starttls_unavailable, login_failed, auth_method_unsupported, server_bye,
  protocol_error, throttled, recipient_rejected, message_rejected };
std::string_view to_string(error_kind);  // the reason code
struct error {
  error_kind kind;
  std::string detail;        // human text with the server's reply; never a secret
  bool permanent = false;    // 5xx about this message: resending the same message cannot help
  int code = 0;              // the SMTP reply code, 0 = none (e.g. EOF, bad syntax)
};

enum class auth_mechanism { none, password, xoauth2 };  // password = PLAIN, else LOGIN

struct session_options {
  std::string helo_name = "localhost";  // our name in EHLO (a FQDN or address literal)
  auth_mechanism auth = auth_mechanism::none;
  std::string username, secret;          // password or bearer token
  bool starttls = false;                 // STARTTLS required (no downgrade)
  std::size_t max_line_length = 4096;    // per reply line
};

struct envelope {
  std::string from;                      // reverse path: bare address
  std::vector<std::string> recipients;   // bare addresses
  std::string data;                      // the RFC 5322 message; dot-stuffed on the way out
};

struct write_bytes { std::string data; };  // may carry a secret (AUTH): never log it
struct start_tls {};                       // transport: TLS handshake, then on_tls_established()
// 250 to the end of data: the server has taken responsibility for message `index`.
struct message_sent { std::size_t index; std::string reply; std::vector<std::string> rejected_recipients; };
struct message_failed { std::size_t index; error err; };  // the session goes on with the next
struct session_done {};                    // QUIT written; the owner closes (gracefully)
struct session_failed { error err; };      // terminal; messages not reported are not sent
using session_output = std::variant<write_bytes, start_tls, message_sent, message_failed, session_done,
                                    session_failed>;

// The DATA payload: CRLF line ends, every line starting with '.' gets another '.', and the
// terminating ".\r\n" (RFC 5321 4.5.2). Lines longer than 998 bytes are refused (nullopt).
std::optional<std::string> dot_stuff(std::string_view message);

class smtp_session {
 public:
  smtp_session(session_options opts, std::vector<envelope> messages);
  void on_bytes(std::string_view bytes);  // any chunking
  void on_tls_established();
  void on_eof();                          // peer closed: session_failed unless done
  std::optional<session_output> poll();
  bool finished() const { return phase_ == phase::done; }
  const std::vector<std::string>& capabilities() const { return caps_; }  // upper-cased lines

 private:
  enum class phase { greeting, ehlo, helo, starttls, tls_handshake, auth, auth_login_user,
                     auth_login_pass, auth_xoauth2_error, mail, rcpt, data, body, rset, done };
  void handle(const reply& r);
  void send(std::string line);
  void ehlo();
  void after_capabilities();
  void authenticate();
  void next_message();
  void send_envelope();
  void on_mail(const reply& r);
  void on_rcpt(const reply& r);
  void on_data(const reply& r);
  void finish_message_failed(error e);
  void report_failed(error e);
  std::string redact(std::string text) const;
  void quit();
  void fail(error e);
  void fail(error_kind k, std::string detail, int code = 0);
  bool has_cap(std::string_view cap) const;
  bool has_auth(std::string_view mech) const;
  error classify(const reply& r, std::string_view during) const;

  session_options opts_;
  std::vector<envelope> messages_;
  reply_parser parser_;
  std::deque<session_output> out_;
  std::vector<std::string> caps_;
  phase phase_ = phase::greeting;
  bool tls_done_ = false;
  bool pipelining_ = false;
  std::size_t current_ = 0;              // index of the message in flight
  std::size_t rcpt_replies_ = 0;         // RCPT replies seen for the current message
  std::size_t rcpt_accepted_ = 0;
  std::vector<std::string> rejected_;
  std::optional<error> message_error_;   // first failure of the current message
  std::optional<std::string> payload_;   // dot-stuffed data of the current message
};

} // namespace mscan::smtp
