// [smtp] config validation, composing outgoing mail, the outbox codec and store calls, the
// ticket comment template and the notification e-mail channel. No network.
#include "core/config.hpp"
#include "core/notifier.hpp"
#include "core/outbox.hpp"
#include "protocols/mime/message.hpp"
#include "storage/codec.hpp"
#include "storage/store.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>

using namespace mscan;

namespace {

const char* base_config = R"(
[[mailbox]]
user = "support"
address = "Support@Corp.example"
host = "127.0.0.1"
password = "x"

[[mailbox]]
user = "alice"
address = "alice@corp.example"
host = "127.0.0.1"
password = "x"

[[rule]]
name = "Support desk"
users = ["support"]
conditions = [ { field = "to", op = "contains", value = "support@corp.example" } ]
actions = [ { type = "create_or_update_ticket", ticket_regex = "T\\d{10}" } ]
)";

auto parse(const std::string& smtp) {
  return core::parse_config(std::string(base_config) + smtp, "/etc/mailscan/test.toml");
}

std::string error_of(const std::string& smtp) {
  auto r = parse(smtp);
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}

struct temp_store {
  std::filesystem::path dir;
  std::unique_ptr<storage::store> db;
  temp_store() {
    std::string p = (std::filesystem::temp_directory_path() / "mscan-smtp-XXXXXX").string();
    dir = ::mkdtemp(p.data());
    db = std::move(storage::store::open(dir).value());
  }
  ~temp_store() {
    db.reset();
    std::filesystem::remove_all(dir);
  }
};

} // namespace

TEST_CASE("[smtp] loads with defaults and resolves the password", "[unit][smtp][config]") {
  ::setenv("MSCAN_TEST_SMTP_PW", "smtp-secret", 1);
  auto r = parse(R"(
[smtp]
host = "127.0.0.1"
username = "support"
password_env = "MSCAN_TEST_SMTP_PW"
from_address = "support@corp.example"
from_name = "Support Desk"
)");
  REQUIRE(r.has_value());
  CHECK(r->smtp.enabled());
  CHECK(r->smtp.port == 587);
  CHECK(r->smtp.security == core::security_mode::starttls);
  CHECK(r->smtp.secret == "smtp-secret");
  CHECK(r->smtp.verify_certificate);
  auto tls = parse("[smtp]\nhost = \"h\"\nsecurity = \"tls\"\nfrom_address = \"support@corp.example\"\n");
  REQUIRE(tls.has_value());
  CHECK(tls->smtp.port == 465);
}

TEST_CASE("a subject template without $ticket_no$ is refused", "[unit][smtp][config]") {
  auto e = error_of(R"(
[smtp]
host = "127.0.0.1"
from_address = "support@corp.example"
subject_template = "Re: $subject$"
)");
  CHECK(e.find("subject_template") != std::string::npos);
  CHECK(e.find("$ticket_no$") != std::string::npos);
  CHECK(e.find("Re: $subject$") != std::string::npos);
  // "$5" is literal text, not a tag; an unknown tag is an error naming it.
  CHECK(parse("[smtp]\nhost = \"h\"\nfrom_address = \"support@corp.example\"\n"
              "subject_template = \"$5 off [$ticket_no$]\"\n").has_value());
  auto unknown = error_of("[smtp]\nhost = \"h\"\nfrom_address = \"support@corp.example\"\n"
                          "body_template = \"$reply_above$ $ticket_number$\"\n");
  CHECK(unknown.find("unknown tag $ticket_number$") != std::string::npos);
}

TEST_CASE("the sender must be the address tickets are received on", "[unit][smtp][config]") {
  auto e = error_of("[smtp]\nhost = \"h\"\nfrom_address = \"alice@corp.example\"\n");
  // Names both: the configured sender and the ticket mailbox's address.
  CHECK(e.find("from_address 'alice@corp.example'") != std::string::npos);
  CHECK(e.find("Support@Corp.example (mailbox 'support')") != std::string::npos);
  // Case does not matter.
  CHECK(parse("[smtp]\nhost = \"h\"\nfrom_address = \"SUPPORT@corp.example\"\n").has_value());
}

TEST_CASE("notify_email needs [smtp]", "[unit][smtp][config]") {
  auto r = core::parse_config("[service]\nnotify_email = \"ops@corp.example\"\n", "/etc/mailscan/t.toml");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("notify_email needs an [smtp]") != std::string::npos);
}

TEST_CASE("composed mail: headers, encoded words, quoted-printable, threading", "[unit][smtp]") {
  core::outgoing_mail m;
  m.from_name = "Support Désk";
  m.from_address = "support@corp.example";
  m.to = {"bob@acme.example"};
  m.subject = "[T0000000001] Drucker brennt – dringend";
  m.body = "Hallo Bob,\n.leading dot\nFrom here\ntrailing space \nlong " + std::string(200, 'x') + "\n";
  m.message_id = "<m1@corp.example>";
  m.in_reply_to = "<r2@acme.example>";
  m.references = {"<r1@acme.example>", "<r2@acme.example>"};
  m.date = 1795996800;
  auto raw = core::compose(m);
  for (std::size_t p = 0, n; (n = raw.find("\r\n", p)) != std::string::npos; p = n + 2)
    CHECK(n - p <= 78);  // every line short
  for (char c : raw)
    CHECK(static_cast<unsigned char>(c) < 0x80);  // 7-bit
  auto parsed = mime::parse_message(raw);
  CHECK(parsed.subject == m.subject);
  CHECK(parsed.from.at(0).display_name == "Support Désk");
  CHECK(parsed.in_reply_to.at(0) == "<r2@acme.example>");
  CHECK(parsed.references.size() == 2);
  CHECK(parsed.body_text.find(".leading dot\nFrom here\ntrailing space \n") != std::string::npos);
  CHECK(parsed.body_text.find(std::string(200, 'x')) != std::string::npos);
}

TEST_CASE("outbox records round trip through the codec and the store", "[unit][smtp][storage]") {
  storage::outbox_record o;
  o.message_id = "<m1@corp.example>";
  o.kind = "ticket_comment";
  o.ticket = "T0000000001";
  o.comment = "text";
  o.subject = "[T0000000001] x";
  o.from = "support@corp.example";
  o.to = {"bob@acme.example"};
  o.data = "Subject: x\r\n\r\nbody\r\n";
  o.state = "failed";
  o.attempts = 3;
  o.created = -5;
  o.next_attempt = 1795996800;
  o.last_error_reason = "recipient_rejected";
  o.last_error_detail = "550";
  auto back = storage::codec::decode_outbox(o.message_id, storage::codec::encode(o));
  REQUIRE(back.has_value());
  CHECK(*back == o);
  auto enc = storage::codec::encode(o);
  CHECK_FALSE(storage::codec::decode_outbox(o.message_id, enc.substr(0, enc.size() - 1)).has_value());
  CHECK_FALSE(storage::codec::decode_outbox(o.message_id, enc + "x").has_value());

  temp_store t;
  REQUIRE(t.db->put_outbox(o));
  CHECK(t.db->outbox_entry(o.message_id) == o);
  o.state = "sent";
  REQUIRE(t.db->put_outbox(o));  // replaces: one entry per Message-ID
  REQUIRE(t.db->outbox().size() == 1);
  CHECK(t.db->outbox()[0].state == "sent");
}

TEST_CASE("a ticket comment: templated, threaded, queued first, recorded on the ticket", "[unit][smtp]") {
  auto cfg = parse(R"toml(
[smtp]
host = "127.0.0.1"
port = 1
from_address = "support@corp.example"
from_name = "Support"
subject_template = "[$ticket_no$] $subject$ ($status$)"
body_template = "$reply_above$\n$comment$\n--\n$comments$"
)toml");
  REQUIRE(cfg.has_value());
  core::ticket_info t{.number = "T0000000001", .subject = "Printer", .status = "Open", .assignee = "alice",
                      .priority = "", .contact = "Bob <bob@acme.example>",
                      .message_ids = {"<req1@acme.example>", "fp:0123", "<c1@corp.example>"},
                      .comments = {{"<c1@corp.example>", "first answer"}}};
  auto m = core::ticket_comment_mail(*cfg, t, "second answer", 1795996800);
  REQUIRE(m.has_value());
  CHECK(m->subject == "[T0000000001] Printer (Open)");
  CHECK(m->to == std::vector<std::string>{"bob@acme.example"});
  CHECK(m->body == "## Please reply above this line ##\nsecond answer\n--\n> first answer\n");
  CHECK(m->in_reply_to == "<c1@corp.example>");
  CHECK(m->references == std::vector<std::string>{"<req1@acme.example>", "<c1@corp.example>"});

  temp_store s;
  auto added = core::add_ticket_comment(*s.db, *cfg, t, "second answer", true, 1795996800);
  REQUIRE(added.has_value());
  auto queued = s.db->outbox_entry(added->message_id);
  REQUIRE(queued);
  CHECK(queued->state == "queued");
  auto rec = s.db->find_by_message_id(added->message_id);
  REQUIRE(rec);
  CHECK(rec->tickets == std::vector<std::string>{"T0000000001"});

  // The server is down (port 1): the entry stays queued with the reason, attempts counted,
  // and the retry waits for the back-off.
  auto rep = core::send_due(*s.db, cfg->smtp, 1795996800);
  CHECK(rep.due == 1);
  CHECK(rep.retrying == 1);
  auto after = s.db->outbox_entry(added->message_id);
  REQUIRE(after);
  CHECK(after->state == "queued");
  CHECK(after->attempts == 1);
  CHECK(after->last_error_reason == "connection_refused");
  CHECK(after->next_attempt == 1795996800 + 60);
  CHECK(core::send_due(*s.db, cfg->smtp, 1795996800 + 59).due == 0);  // not due yet
}

TEST_CASE("attempts are bounded: after max_attempts the entry is failed", "[unit][smtp]") {
  auto cfg = parse("[smtp]\nhost = \"127.0.0.1\"\nport = 1\nfrom_address = \"support@corp.example\"\n"
                   "max_attempts = 2\nretry_backoff_s = 0\n");
  REQUIRE(cfg.has_value());
  temp_store s;
  core::outgoing_mail m{.from_name = "", .from_address = "support@corp.example", .to = {"bob@acme.example"},
                        .subject = "x", .body = "y", .message_id = "<n1@corp.example>", .in_reply_to = "",
                        .references = {}, .date = 1, .auto_submitted = false};
  REQUIRE(s.db->put_outbox(core::outbox_entry_for(m, "notification", {}, {}, 1)));
  CHECK(core::send_due(*s.db, cfg->smtp, 10).retrying == 1);
  CHECK(core::send_due(*s.db, cfg->smtp, 10).failed == 1);
  CHECK(core::send_due(*s.db, cfg->smtp, 10).due == 0);
  CHECK(s.db->outbox_entry("<n1@corp.example>")->state == "failed");
}

TEST_CASE("notifications through the e-mail channel are queued in the outbox", "[unit][smtp][ops]") {
  auto cfg = core::parse_config(std::string(base_config) +
                                  "[service]\nnotify_email = \"Ops@corp.example\"\n"
                                  "[smtp]\nhost = \"127.0.0.1\"\nfrom_address = \"support@corp.example\"\n",
                                "/etc/mailscan/t.toml");
  REQUIRE(cfg.has_value());
  temp_store s;
  core::notifier n{core::webhook_options{}, s.db.get()};
  n.add_channel([&](const storage::notification_record& r) { return core::queue_notification_mail(*s.db, *cfg, r); });
  storage::notification_record rec{.at = 1795996800, .user = "alice", .kind = "failing", .reason = "login_failed",
                                   .detail = "LOGIN refused", .next_step = "check the password",
                                   .consecutive_failures = 10, .delivery = ""};
  n.notify(rec);
  auto box = s.db->outbox();
  REQUIRE(box.size() == 1);
  CHECK(box[0].kind == "notification");
  CHECK(box[0].to == std::vector<std::string>{"ops@corp.example"});
  CHECK(box[0].subject == "[mailscan] mailbox alice: failing (login_failed)");
  CHECK(box[0].data.find("Auto-Submitted: auto-generated") != std::string::npos);
  auto stored = s.db->notifications();
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].delivery.starts_with("email: queued <mailscan."));
}
