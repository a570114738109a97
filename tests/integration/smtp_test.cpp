// Ticket conversations by e-mail end to end, with real servers only: the dovecot fixture
// (IMAP, and SASL for the mail server), a private Postfix (submission with STARTTLS and
// implicit TLS, AUTH against dovecot's users, delivery into dovecot's Maildirs) and the real
// `mailscan` executable: a scanned support mail makes a ticket, `ticket comment --send` mails
// the customer, the customer's reply becomes exactly one new comment on the same ticket.
#include "core/config.hpp"
#include "core/outbox.hpp"
#include "storage/store.hpp"
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/imap_test_client.hpp"
#include "tests/support/mailscan_cli.hpp"
#include "tests/support/postfix_fixture.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <fstream>
#include <thread>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

struct smtp_setup {
  std::uint16_t port = 0;
  std::string security = "starttls";
  std::string password = "pw-s";
};

std::string config_text(const test::dovecot_fixture& dc, const test::postfix_fixture& pf, const smtp_setup& s) {
  return fmt::format(R"([engine]
data_dir = "data"
log_dir = "logs"
days_back = 0
internal_domains = ["corp.example"]

[[mailbox]]
user = "support"
address = "support@corp.example"
host = "127.0.0.1"
port = {}
security = "none"
username = "support"
password = "pw-s"
folders = "INBOX"

[[rule]]
name = "Support desk"
users = ["support"]
folders = ["INBOX"]
conditions = [ {{ field = "to", op = "contains", value = "support@corp.example" }} ]
actions = [ {{ type = "create_or_update_ticket", status = "Open", assignee = "alice", ticket_regex = "T\\d{{10}}" }} ]

[smtp]
host = "127.0.0.1"
port = {}
security = "{}"
ca_file = "{}"
username = "support"
password = "{}"
from_address = "support@corp.example"
from_name = "Support Desk"
retry_backoff_s = 0
timeout_s = 10
)",
                     dc.imap_port(), s.port, s.security, pf.ca_file(), s.password);
}

struct world {
  test::dovecot_fixture dc{test::dovecot_options{.users = {{"support", "pw-s"}, {"customer", "pw-c"}}, .sasl_inet = true}};
  test::postfix_fixture pf{dc, test::postfix_options{.domain = "acme.example", .users = {"customer"}}};
  fs::path dir = test::unique_test_dir("smtp");
  std::string conf = (dir / "mailscan.toml").string();

  void write_config(const smtp_setup& s) { std::ofstream(conf, std::ios::trunc) << config_text(dc, pf, s); }

  nlohmann::json tickets() {
    auto r = test::run_mailscan({"query", "--config", conf, "tickets", "--json"});
    REQUIRE(r.code == 0);
    return nlohmann::json::parse(r.out).at("tickets");
  }
  nlohmann::json outbox(bool send = false) {
    std::vector<std::string> args{"outbox", "--config", conf, "--json"};
    if (send) args.push_back("--send");
    auto r = test::run_mailscan(args);
    INFO("outbox: " << r.out << r.err);
    return nlohmann::json::parse(r.out).at("outbox");
  }
  // A ticket from a customer's request, scanned by `mailscan run --once`.
  std::string make_ticket() {
    dc.seed("support", "INBOX",
            "From: Cathy Customer <customer@acme.example>\r\nTo: support@corp.example\r\n"
            "Subject: Printer on fire\r\nMessage-ID: <req1@acme.example>\r\n"
            "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nPlease help.\r\n");
    auto run = test::run_mailscan({"run", "--config", conf, "--once"});
    INFO(run.out << run.err);
    REQUIRE(run.code == 0);
    auto t = tickets();
    REQUIRE(t.size() == 1);
    return t[0].at("number").get<std::string>();
  }
  // The customer's INBOX over IMAP: number of messages, polled until `want` or the deadline.
  long long customer_messages(long long want, std::chrono::seconds within = std::chrono::seconds(15)) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    long long n = -1;
    while (true) {
      auto c = test::imap_test_client::connect_plain(dc.imap_port());
      REQUIRE(c);
      REQUIRE((*c)->command("LOGIN customer pw-c"));
      auto st = (*c)->command("STATUS INBOX (MESSAGES)");
      REQUIRE(st);
      n = test::status_item(*st, "MESSAGES");
      (void)(*c)->command("LOGOUT");
      if (n >= want || std::chrono::steady_clock::now() > deadline) return n;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling delivery, bounded
    }
  }
  std::string customer_message(int seq, std::string_view what) {
    auto c = test::imap_test_client::connect_plain(dc.imap_port());
    REQUIRE(c);
    REQUIRE((*c)->command("LOGIN customer pw-c"));
    REQUIRE((*c)->command("EXAMINE INBOX"));
    auto f = (*c)->command(fmt::format("FETCH {} {}", seq, what));
    REQUIRE(f);
    std::string all;
    for (auto& l : *f) all += l + "\n";
    return all;
  }
};

} // namespace

TEST_CASE("smtp: a ticket comment reaches the customer and the reply comes back as a comment", "[integration][smtp]") {
  REQUIRE(test::dovecot_available());
  REQUIRE(test::postfix_available());
  world w;
  w.write_config({.port = w.pf.submission_port()});
  const auto number = w.make_ticket();

  auto sent = test::run_mailscan({"ticket", "comment", "--config", w.conf, number, "--text",
                                  "A technician is on the way.\nPlease keep the door open.", "--send", "--json"});
  INFO("comment: " << sent.out << sent.err << "\npostfix: " << w.pf.log_tail());
  REQUIRE(sent.code == 0);
  auto result = nlohmann::json::parse(sent.out);
  CHECK(result.at("sent") == true);
  const auto message_id = result.at("message_id").get<std::string>();

  REQUIRE(w.customer_messages(1) == 1);
  auto header = w.customer_message(1, "BODY[HEADER.FIELDS (SUBJECT FROM IN-REPLY-TO REFERENCES MESSAGE-ID)]");
  INFO(header);
  CHECK(header.find("Subject: [" + number + "] Printer on fire") != std::string::npos);
  CHECK(header.find("In-Reply-To: <req1@acme.example>") != std::string::npos);
  CHECK(header.find("Message-ID: " + message_id) != std::string::npos);
  CHECK(header.find("\"Support Desk\" <support@corp.example>") != std::string::npos);
  auto text = w.customer_message(1, "BODY[TEXT]");
  CHECK(text.find("## Please reply above this line ##") < text.find("A technician is on the way."));

  // The customer answers above the marker, quoting our mail (a minute later: comments are
  // listed in date order).
  char date[64];
  const std::time_t later = std::time(nullptr) + 60;
  std::tm tm{};
  gmtime_r(&later, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  w.dc.seed("support", "INBOX",
            fmt::format("From: Cathy Customer <customer@acme.example>\r\nTo: Support Desk <support@corp.example>\r\n"
                        "Subject: Re: [{}] Printer on fire\r\nMessage-ID: <reply1@acme.example>\r\n"
                        "In-Reply-To: {}\r\nReferences: <req1@acme.example> {}\r\n"
                        "Date: {}\r\n\r\n"
                        "Thanks, the printer works again.\r\n\r\n"
                        "> ## Please reply above this line ##\r\n>\r\n> A technician is on the way.\r\n",
                        number, message_id, message_id, date));
  auto run = test::run_mailscan({"run", "--config", w.conf, "--once"});
  INFO(run.out << run.err);
  REQUIRE(run.code == 0);
  auto tickets = w.tickets();
  INFO(tickets.dump(2));
  REQUIRE(tickets.size() == 1);
  auto& t = tickets[0];
  CHECK(t.at("number") == number);
  REQUIRE(t.at("comments").size() == 2);
  CHECK(t.at("comments")[0].at("text") == "A technician is on the way.\nPlease keep the door open.");
  CHECK(t.at("comments")[1].at("text") == "Thanks, the printer works again.");

  // Never sent twice: the outbox has it as sent after one attempt; sending again sends nothing.
  auto box = w.outbox(true);
  REQUIRE(box.size() == 1);
  CHECK(box[0].at("state") == "sent");
  CHECK(box[0].at("attempts") == 1);
  CHECK(w.customer_messages(1, std::chrono::seconds(0)) == 1);
}

TEST_CASE("smtp: server down keeps the comment queued, a later send delivers it once", "[integration][smtp]") {
  REQUIRE(test::dovecot_available());
  REQUIRE(test::postfix_available());
  world w;
  // Port 1 on loopback: nobody listens there, the mail server is "down".
  const std::uint16_t dead = 1;
  w.write_config({.port = dead});
  const auto number = w.make_ticket();
  auto first = test::run_mailscan({"ticket", "comment", "--config", w.conf, number, "--text", "On our way.", "--send"});
  INFO(first.out << first.err);
  CHECK(first.code == 3);
  auto box = w.outbox();
  REQUIRE(box.size() == 1);
  CHECK(box[0].at("state") == "queued");
  CHECK(box[0].at("attempts") == 1);
  CHECK(box[0].at("last_error").at("reason") == "connection_refused");
  // The comment is on the ticket already (accepted), only the mail waits.
  CHECK(w.tickets()[0].at("comments").size() == 1);

  // Wrong password: classified, the secret nowhere in the output.
  w.write_config({.port = w.pf.submission_port(), .security = "starttls", .password = "Wrong-Secret-9"});
  auto wrong = test::run_mailscan({"outbox", "--config", w.conf, "--send", "--json"});
  CHECK(wrong.code == 3);
  CHECK((wrong.out + wrong.err).find("Wrong-Secret-9") == std::string::npos);
  box = nlohmann::json::parse(wrong.out).at("outbox");
  CHECK(box[0].at("state") == "queued");
  CHECK(box[0].at("attempts") == 2);
  CHECK(box[0].at("last_error").at("reason") == "login_failed");

  // The server is back (implicit TLS this time): the engine's pass sends it, once.
  w.write_config({.port = w.pf.smtps_port(), .security = "tls"});
  auto run = test::run_mailscan({"run", "--config", w.conf, "--once"});
  CHECK(run.code == 0);
  box = w.outbox();
  INFO(box.dump(2) << "\npostfix: " << w.pf.log_tail());
  CHECK(box[0].at("state") == "sent");
  CHECK(box[0].at("attempts") == 3);
  REQUIRE(w.customer_messages(1) == 1);
  // And never again: neither `outbox --send` nor another pass sends it a second time.
  box = w.outbox(true);
  CHECK(box[0].at("attempts") == 3);
  CHECK(test::run_mailscan({"run", "--config", w.conf, "--once"}).code == 0);
  CHECK(w.outbox()[0].at("attempts") == 3);
  CHECK(w.customer_messages(1, std::chrono::seconds(0)) == 1);
}

TEST_CASE("smtp: a failing mailbox's notification arrives by e-mail", "[integration][smtp]") {
  REQUIRE(test::dovecot_available());
  REQUIRE(test::postfix_available());
  test::dovecot_fixture dc{test::dovecot_options{.users = {{"support", "pw-s"}, {"ops", "pw-o"}}, .sasl_inet = true}};
  test::postfix_fixture pf{dc, test::postfix_options{.domain = "acme.example", .users = {"ops"}}};
  auto dir = test::unique_test_dir("smtp-notify");
  auto conf = (dir / "mailscan.toml").string();
  std::ofstream(conf) << fmt::format(R"([engine]
data_dir = "data"
log_dir = "logs"
notify_after_failures = 1

[service]
notify_email = "ops@acme.example"

[[mailbox]]
user = "support"
address = "support@corp.example"
host = "127.0.0.1"
port = {}
security = "none"
username = "support"
password = "not-the-password"

[smtp]
host = "127.0.0.1"
port = {}
security = "starttls"
ca_file = "{}"
username = "support"
password = "pw-s"
from_address = "support@corp.example"
)",
                                     dc.imap_port(), pf.submission_port(), pf.ca_file());
  auto run = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(run.out << run.err << "\npostfix: " << pf.log_tail());
  CHECK(run.code == 3);
  auto box = nlohmann::json::parse(test::run_mailscan({"outbox", "--config", conf, "--json"}).out).at("outbox");
  REQUIRE(box.size() == 1);
  CHECK(box[0].at("kind") == "notification");
  CHECK(box[0].at("state") == "sent");
  CHECK(box[0].at("subject") == "[mailscan] mailbox support: failing (login_failed)");
  // It is in the ops mailbox.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  long long n = 0;
  while (n < 1 && std::chrono::steady_clock::now() < deadline) {
    auto c = test::imap_test_client::connect_plain(dc.imap_port());
    REQUIRE(c);
    REQUIRE((*c)->command("LOGIN ops pw-o"));
    n = test::status_item(*(*c)->command("STATUS INBOX (MESSAGES)"), "MESSAGES");
    if (n < 1) std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling delivery, bounded
  }
  CHECK(n == 1);
}

// Not run by default: `integration_tests "[smtp-bench]"`. N notification mails queued, then
// one send_due() over one connection (pipelined envelopes) into Postfix; prints messages/s.
TEST_CASE("smtp: outbox throughput into postfix", "[.][smtp-bench]") {
  REQUIRE(test::postfix_available());
  world w;
  w.write_config({.port = w.pf.submission_port()});
  auto cfg = core::load_config(w.conf);
  REQUIRE(cfg);
  auto db = std::move(storage::store::open(cfg->engine.data_dir).value());
  const int n = 200;
  for (int i = 0; i < n; ++i) {
    core::outgoing_mail m{.from_name = "Support", .from_address = "support@corp.example", .to = {"customer@acme.example"},
                          .subject = fmt::format("[T{:010}] load {}", i, i), .body = std::string(2000, 'x') + "\n",
                          .message_id = core::new_message_id("support@corp.example"), .in_reply_to = "",
                          .references = {}, .date = 1795996800, .auto_submitted = false};
    REQUIRE(db->put_outbox(core::outbox_entry_for(m, "notification", {}, {}, 1)));
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto rep = core::send_due(*db, cfg->smtp, std::time(nullptr), nullptr, n);
  const auto s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(rep.sent == std::size_t(n));
  WARN(fmt::format("{} messages in {:.3f} s over one connection: {:.0f} messages/s (each marked sending and "
                   "sent with a synced store write)", n, s, n / s));
}
