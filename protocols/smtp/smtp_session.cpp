#include "protocols/smtp/smtp_session.hpp"
#include "common/text.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "protocols/imap/command_writer.hpp"  // base64 and the SASL initial responses

namespace mscan::smtp {

namespace {


bool ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// An address goes inside <...> on a command line: nothing that could end or split it.
bool safe_path(std::string_view a) {
  return a.find_first_of("\r\n<> \t") == std::string_view::npos;
}

} // namespace

std::string_view to_string(error_kind k) {
  switch (k) {
    case error_kind::starttls_unavailable: return "starttls_unavailable";
    case error_kind::login_failed: return "login_failed";
    case error_kind::auth_method_unsupported: return "auth_method_unsupported";
    case error_kind::server_bye: return "server_bye";
    case error_kind::protocol_error: return "protocol_error";
    case error_kind::throttled: return "throttled";
    case error_kind::recipient_rejected: return "recipient_rejected";
    case error_kind::message_rejected: return "message_rejected";
  }
  return "protocol_error";
}

std::optional<std::string> dot_stuff(std::string_view m) {
  std::string out;
  out.reserve(m.size() + m.size() / 32 + 8);
  std::size_t i = 0;
  while (i < m.size()) {
    // A line ends at CRLF, a bare LF or a bare CR: all become CRLF, so no "\n.\n" (or any
    // other lone line end) can reach the server (SMTP smuggling).
    std::size_t e = m.find_first_of("\r\n", i);
    const std::size_t end = e == std::string_view::npos ? m.size() : e;
    if (end - i > 998) return std::nullopt;
    if (end > i && m[i] == '.') out += '.';
    out.append(m.substr(i, end - i));
    out += "\r\n";
    if (e == std::string_view::npos) break;
    i = e + 1;
    if (m[e] == '\r' && i < m.size() && m[i] == '\n') ++i;
  }
  out += ".\r\n";
  return out;
}

smtp_session::smtp_session(session_options opts, std::vector<envelope> messages)
  : opts_(std::move(opts)), messages_(std::move(messages)),
    parser_(reply_limits{.max_line_length = opts_.max_line_length, .max_lines = 256}) {
  if (!safe_path(opts_.helo_name) || opts_.helo_name.empty()) opts_.helo_name = "localhost";
}

std::optional<session_output> smtp_session::poll() {
  if (out_.empty()) return std::nullopt;
  auto o = std::move(out_.front());
  out_.pop_front();
  return o;
}

void smtp_session::on_bytes(std::string_view bytes) {
  while (!bytes.empty() && phase_ != phase::done) {
    if (phase_ == phase::tls_handshake) {
      // Only the fact is reported: what was injected depends on how the bytes arrived.
      fail(error_kind::protocol_error, "data after the STARTTLS reply, before TLS (injection refused)");
      return;
    }
    bytes.remove_prefix(parser_.feed(bytes));
    if (parser_.failed()) {
      fail(error_kind::protocol_error, parser_.error());
      return;
    }
    if (parser_.ready()) handle(parser_.take());
  }
}

void smtp_session::on_tls_established() {
  if (phase_ != phase::tls_handshake) return;
  tls_done_ = true;
  caps_.clear();  // what the server said before TLS is not trusted
  ehlo();
}

void smtp_session::on_eof() {
  if (phase_ == phase::done) return;
  if (!parser_.at_boundary())
    fail(error_kind::protocol_error, "connection closed by the server in the middle of a reply");
  else
    fail(error_kind::server_bye, "connection closed by the server");
}

void smtp_session::send(std::string line) {
  line += "\r\n";
  out_.push_back(write_bytes{std::move(line)});
}

void smtp_session::fail(error e) {
  if (phase_ == phase::done) return;
  phase_ = phase::done;
  e.detail = redact(std::move(e.detail));
  out_.push_back(session_failed{std::move(e)});
}

// A hostile server could echo the password back in a reply text, which then lands in an
// error detail and a log line: never.
std::string smtp_session::redact(std::string text) const {
  if (opts_.secret.empty()) return text;
  for (auto p = text.find(opts_.secret); p != std::string::npos; p = text.find(opts_.secret, p + 10))
    text.replace(p, opts_.secret.size(), "[redacted]");
  return text;
}

void smtp_session::report_failed(error e) {
  e.detail = redact(std::move(e.detail));
  out_.push_back(message_failed{current_, std::move(e)});
}

void smtp_session::fail(error_kind k, std::string detail, int code) {
  fail(error{k, std::move(detail), false, code});
}

bool smtp_session::has_cap(std::string_view cap) const {
  for (const auto& c : caps_)
    if (c == cap || (c.size() > cap.size() && c.compare(0, cap.size(), cap) == 0 && c[cap.size()] == ' '))
      return true;
  return false;
}

bool smtp_session::has_auth(std::string_view mech) const {
  for (const auto& c : caps_) {
    // "AUTH PLAIN LOGIN" (RFC 4954) or the pre-standard "AUTH=PLAIN LOGIN".
    if (c.size() < 5 || c.compare(0, 4, "AUTH") != 0 || (c[4] != ' ' && c[4] != '=')) continue;
    std::string_view rest = std::string_view{c}.substr(5);
    while (!rest.empty()) {
      const auto sp = rest.find(' ');
      if (rest.substr(0, sp) == mech) return true;
      if (sp == std::string_view::npos) break;
      rest.remove_prefix(sp + 1);
    }
  }
  return false;
}

error smtp_session::classify(const reply& r, std::string_view during) const {
  const auto detail = fmt::format("{}: {} {}", during, r.code, r.text());
  error e{error_kind::protocol_error, detail, false, r.code};
  if (r.code == 421 || r.code == 450 || r.code == 451 || r.code == 452 || r.code == 454 ||
      (r.code >= 400 && r.code < 500)) {
    e.kind = error_kind::throttled;  // transient by definition (RFC 5321 4.2.1)
    return e;
  }
  const bool auth = phase_ == phase::auth || phase_ == phase::auth_login_user ||
                    phase_ == phase::auth_login_pass || phase_ == phase::auth_xoauth2_error;
  if (r.code == 535 || r.code == 530 || (auth && r.code == 501 && phase_ != phase::auth_xoauth2_error)) {
    e.kind = error_kind::login_failed;
  } else if (r.code == 534 || r.code == 538 || (auth && r.code == 504)) {
    e.kind = error_kind::auth_method_unsupported;
  } else if (phase_ == phase::rcpt && r.code >= 500) {
    e.kind = error_kind::recipient_rejected;
    e.permanent = true;
  } else if ((phase_ == phase::mail || phase_ == phase::data || phase_ == phase::body) && r.code >= 500) {
    e.kind = error_kind::message_rejected;
    e.permanent = true;
  } else if (auth && r.code >= 500) {
    e.kind = error_kind::login_failed;
  }
  return e;
}

void smtp_session::handle(const reply& r) {
  if (r.code == 421 && phase_ != phase::greeting) {
    // The server is closing the channel (overload, shutdown): nothing more happens here.
    fail(classify(r, "server closing the connection"));
    return;
  }
  switch (phase_) {
    case phase::greeting:
      if (r.code == 220) return ehlo();
      if (r.code >= 400 && r.code < 500) return fail(classify(r, "greeting"));
      if (r.code >= 500) return fail(error_kind::server_bye, fmt::format("greeting: the server refuses service: {} {}", r.code, r.text()), r.code);
      return fail(error_kind::protocol_error, fmt::format("greeting: unexpected {} {}", r.code, r.text()), r.code);
    case phase::ehlo:
      if (r.code == 250) {
        caps_.clear();
        for (std::size_t i = 1; i < r.lines.size(); ++i) caps_.push_back(ascii_upper(r.lines[i]));
        pipelining_ = has_cap("PIPELINING");
        return after_capabilities();
      }
      if (r.code >= 400 && r.code < 500) return fail(classify(r, "EHLO"));
      if (opts_.starttls && !tls_done_)
        return fail(error_kind::starttls_unavailable, fmt::format("EHLO refused ({} {}), so no STARTTLS", r.code, r.text()), r.code);
      if (opts_.auth != auth_mechanism::none)
        return fail(error_kind::auth_method_unsupported, fmt::format("EHLO refused ({} {}), so no AUTH", r.code, r.text()), r.code);
      phase_ = phase::helo;
      return send("HELO " + opts_.helo_name);
    case phase::helo:
      if (r.code == 250) {
        caps_.clear();
        pipelining_ = false;
        return next_message();
      }
      return fail(classify(r, "HELO"));
    case phase::starttls:
      if (r.code == 220) {
        phase_ = phase::tls_handshake;
        out_.push_back(start_tls{});
        return;
      }
      return fail(error_kind::starttls_unavailable, fmt::format("STARTTLS refused: {} {}", r.code, r.text()), r.code);
    case phase::tls_handshake:
      return;  // on_bytes refuses anything here
    case phase::auth:
      if (r.code == 235) return next_message();
      if (r.code == 334 && opts_.auth == auth_mechanism::xoauth2) {
        // XOAUTH2 failure: the server sends a base64 JSON error as a challenge; an empty line
        // answers it and the final 535 follows.
        phase_ = phase::auth_xoauth2_error;
        return send("");
      }
      if (r.code == 334) return fail(error_kind::protocol_error, "AUTH: unexpected challenge after the initial response", r.code);
      return fail(classify(r, "AUTH"));
    case phase::auth_xoauth2_error:
      if (r.code == 235) return next_message();
      return fail(error{error_kind::login_failed, fmt::format("AUTH XOAUTH2: {} {}", r.code, r.text()), false, r.code});
    case phase::auth_login_user:
      if (r.code != 334) return fail(classify(r, "AUTH LOGIN"));
      phase_ = phase::auth_login_pass;
      return send(imap::base64_encode(opts_.username));
    case phase::auth_login_pass:
      if (r.code != 334) return fail(classify(r, "AUTH LOGIN"));
      phase_ = phase::auth;
      return send(imap::base64_encode(opts_.secret));
    case phase::mail: return on_mail(r);
    case phase::rcpt: return on_rcpt(r);
    case phase::data: return on_data(r);
    case phase::body:
      if (r.code == 250) {
        for (auto& x : rejected_) x = redact(std::move(x));
        out_.push_back(message_sent{current_, redact(fmt::format("{} {}", r.code, r.text())), std::move(rejected_)});
      } else {
        auto e = classify(r, "end of data");
        if (r.code < 400) e = error{error_kind::protocol_error, fmt::format("end of data: unexpected {} {}", r.code, r.text()), false, r.code};
        report_failed(std::move(e));
      }
      ++current_;  // the transaction is over either way (RFC 5321 4.1.1.4)
      return next_message();
    case phase::rset:
      if (r.code != 250) return fail(classify(r, "RSET"));
      ++current_;
      return next_message();
    case phase::done:
      return;
  }
}

void smtp_session::ehlo() {
  phase_ = phase::ehlo;
  send("EHLO " + opts_.helo_name);
}

void smtp_session::after_capabilities() {
  if (opts_.starttls && !tls_done_) {
    if (!has_cap("STARTTLS"))
      return fail(error_kind::starttls_unavailable, "the server does not offer STARTTLS (security = \"starttls\" refuses to go on without TLS)");
    phase_ = phase::starttls;
    return send("STARTTLS");
  }
  if (opts_.auth != auth_mechanism::none) return authenticate();
  next_message();
}

void smtp_session::authenticate() {
  phase_ = phase::auth;
  if (opts_.auth == auth_mechanism::xoauth2) {
    if (!has_auth("XOAUTH2"))
      return fail(error_kind::auth_method_unsupported, "the server does not offer AUTH XOAUTH2");
    return send("AUTH XOAUTH2 " + imap::sasl_xoauth2(opts_.username, opts_.secret));
  }
  if (has_auth("PLAIN")) return send("AUTH PLAIN " + imap::sasl_plain(opts_.username, opts_.secret));
  if (has_auth("LOGIN")) {
    phase_ = phase::auth_login_user;
    return send("AUTH LOGIN");
  }
  fail(error_kind::auth_method_unsupported,
       tls_done_ || !opts_.starttls ? "the server offers neither AUTH PLAIN nor AUTH LOGIN"
                                     : "the server offers no usable AUTH mechanism");
}

void smtp_session::next_message() {
  if (current_ >= messages_.size()) return quit();
  rcpt_replies_ = rcpt_accepted_ = 0;
  rejected_.clear();
  message_error_.reset();
  const auto& m = messages_[current_];
  auto refuse = [&](std::string why) {
    report_failed(error{error_kind::message_rejected, std::move(why), true, 0});
    ++current_;
    next_message();
  };
  if (m.recipients.empty()) return refuse("no recipients");
  if (!safe_path(m.from)) return refuse("the sender address contains characters not allowed in a path");
  bool utf8 = !ascii(m.from);
  for (const auto& r : m.recipients) {
    if (!safe_path(r) || r.empty()) return refuse(fmt::format("recipient '{}' is not a valid address", excerpt(r)));
    utf8 = utf8 || !ascii(r);
  }
  if (utf8 && !has_cap("SMTPUTF8")) return refuse("an address is not ASCII and the server does not offer SMTPUTF8");
  payload_ = dot_stuff(m.data);
  if (!payload_) return refuse("a line of the message is longer than 998 bytes");
  std::string mail = fmt::format("MAIL FROM:<{}>", m.from);
  if (has_cap("SIZE")) mail += fmt::format(" SIZE={}", payload_->size());
  if (utf8) mail += " SMTPUTF8";
  phase_ = phase::mail;
  if (!pipelining_) return send(std::move(mail));
  // RFC 2920: the whole envelope and DATA in one write; the replies come back in order.
  std::string batch = mail + "\r\n";
  for (const auto& r : m.recipients) batch += fmt::format("RCPT TO:<{}>\r\n", r);
  batch += "DATA\r\n";
  out_.push_back(write_bytes{std::move(batch)});
}

void smtp_session::on_mail(const reply& r) {
  if (r.code != 250) {
    message_error_ = classify(r, "MAIL FROM");  // while phase_ is still mail
    phase_ = phase::rcpt;
    if (r.code < 400) *message_error_ = error{error_kind::protocol_error, fmt::format("MAIL FROM: unexpected {} {}", r.code, r.text()), false, r.code};
    if (!pipelining_) return finish_message_failed(*message_error_);
    return;  // the RCPT and DATA replies are still coming
  }
  phase_ = phase::rcpt;
  if (!pipelining_) send(fmt::format("RCPT TO:<{}>", messages_[current_].recipients[0]));
}

void smtp_session::on_rcpt(const reply& r) {
  const auto& m = messages_[current_];
  const auto& who = m.recipients[rcpt_replies_];
  ++rcpt_replies_;
  if (r.code == 250 || r.code == 251) {
    ++rcpt_accepted_;
  } else {
    rejected_.push_back(fmt::format("{}: {} {}", who, r.code, r.text()));
    if (!message_error_) {
      auto e = classify(r, fmt::format("RCPT TO:<{}>", who));
      if (r.code < 400) e = error{error_kind::protocol_error, fmt::format("RCPT TO: unexpected {} {}", r.code, r.text()), false, r.code};
      message_error_ = std::move(e);
    }
  }
  if (rcpt_replies_ < m.recipients.size()) {
    if (!pipelining_) send(fmt::format("RCPT TO:<{}>", m.recipients[rcpt_replies_]));
    return;
  }
  phase_ = phase::data;
  if (pipelining_) return;  // DATA was sent with the envelope
  if (rcpt_accepted_ == 0) return finish_message_failed(*message_error_);
  send("DATA");
}

void smtp_session::on_data(const reply& r) {
  if (r.code == 354) {
    if (rcpt_accepted_ == 0 || (message_error_ && message_error_->kind == error_kind::message_rejected))
      return fail(error_kind::protocol_error, "DATA accepted although the envelope was refused");
    // Some recipients may have been refused: the message goes to those accepted, and
    // message_sent lists the others.
    phase_ = phase::body;
    out_.push_back(write_bytes{std::move(*payload_)});
    payload_.reset();
    return;
  }
  auto e = message_error_ ? *message_error_ : classify(r, "DATA");
  if (!message_error_ && r.code < 400) e = error{error_kind::protocol_error, fmt::format("DATA: unexpected {} {}", r.code, r.text()), false, r.code};
  finish_message_failed(std::move(e));
}

void smtp_session::finish_message_failed(error e) {
  report_failed(std::move(e));
  // The server may still hold part of a transaction: RSET clears it before the next message.
  phase_ = phase::rset;
  send("RSET");
}

void smtp_session::quit() {
  phase_ = phase::done;
  send("QUIT");
  out_.push_back(session_done{});
}

} // namespace mscan::smtp
