#include "apps/mailscan/mail_commands.hpp"

#include "apps/mailscan/output.hpp"
#include "core/config.hpp"
#include "core/event_log.hpp"
#include "core/outbox.hpp"
#include "storage/store.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <iostream>

namespace mscan::apps {

namespace {

constexpr int exit_ok = 0, exit_usage = 2, exit_failed = 3, exit_unknown = 4;

int error_line(std::string_view what, std::string_view why, int code) {
  std::cerr << fmt::format("mailscan: {}: {}\n", what, why);
  return code;
}

std::int64_t now_s() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

// The ticket as `query tickets` derives it (one derivation for both).
std::optional<core::ticket_info> find_ticket(const storage::store& db, const std::string& number) {
  auto all = tickets_json(db.query_messages({}));
  for (auto& t : all["tickets"]) {
    if (str(t, "number") != number)
      continue;
    core::ticket_info out;
    out.number = number;
    out.subject = str(t, "subject");
    out.status = str(t, "status");
    out.assignee = str(t, "assignee");
    out.priority = str(t, "priority");
    out.contact = str(t, "contact");
    for (auto& id : t["message_ids"])
      if (id.is_string())
        out.message_ids.push_back(id.get<std::string>());
    for (auto& c : t["comments"])
      out.comments.push_back({str(c, "message_id"), str(c, "text")});
    return out;
  }
  return std::nullopt;
}

struct opened {
  core::config cfg;
  std::unique_ptr<storage::store> db;
};

std::optional<opened> open_rw(const std::string& config_file, std::string_view command, int& code) {
  auto cfg = core::load_config(config_file);
  if (!cfg) {
    code = error_line("config", cfg.error().message, exit_usage);
    return std::nullopt;
  }
  storage::open_options o;
  o.create_if_missing = false;
  auto db = storage::store::open(cfg->engine.data_dir, o);
  if (!db && db.error().kind == storage::error::code::not_found) {
    code = error_line(command, fmt::format("no store in {} yet (nothing scanned)", cfg->engine.data_dir.string()), exit_failed);
    return std::nullopt;
  }
  if (!db) {
    // Most often: `mailscan run` holds the database; the lock says so.
    code = error_line(command, fmt::format("{} (stop `mailscan run` first)", db.error().message), exit_failed);
    return std::nullopt;
  }
  return opened{std::move(cfg.value()), std::move(db.value())};
}

nlohmann::json entry_json(const storage::outbox_record& o) {
  auto t = [](std::int64_t v) { return v ? nlohmann::json(iso8601(v)) : nlohmann::json(nullptr); };
  nlohmann::json err = nullptr;
  if (!o.last_error_reason.empty())
    err = {{"reason", o.last_error_reason}, {"detail", o.last_error_detail}};
  return {{"message_id", o.message_id}, {"kind", o.kind},
          {"ticket", o.ticket.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.ticket)},
          {"to", o.to}, {"subject", o.subject}, {"state", o.state}, {"attempts", o.attempts},
          {"created", t(o.created)}, {"next_attempt", o.state == "queued" ? t(o.next_attempt) : nlohmann::json(nullptr)},
          {"sent_at", t(o.sent_at)}, {"last_error", err}};
}

void print_entry(const storage::outbox_record& o) {
  std::cout << fmt::format("{}  {}  {}  to {}  attempts {}{}{}\n", o.message_id, o.state,
                           o.ticket.empty() ? o.kind : o.ticket, fmt::join(o.to, ", "), o.attempts,
                           o.state == "queued" && o.attempts ? "  next " + iso8601(o.next_attempt) : std::string{},
                           o.last_error_reason.empty() ? std::string{}
                                                       : fmt::format("  last error {}: {}", o.last_error_reason, o.last_error_detail));
}

void print_send_report(const core::outbox_send_report& r) {
  if (r.due == 0)
    return;
  std::cout << fmt::format("outbox: {} due, {} sent, {} to retry, {} failed{}\n", r.due, r.sent, r.retrying, r.failed,
                           r.reason.empty() ? std::string{} : fmt::format(" ({}: {})", r.reason, r.detail));
}

} // namespace

int run_ticket_comment(const std::string& config_file, const std::string& ticket, const std::string& text,
                       bool send, bool json) {
  int code = 0;
  auto o = open_rw(config_file, "ticket comment", code);
  if (!o)
    return code;
  if (text.empty())
    return error_line("ticket comment", "--text is empty", exit_usage);
  if (send && !o->cfg.smtp.enabled())
    return error_line("ticket comment", "--send needs an [smtp] table in the config", exit_usage);
  auto t = find_ticket(*o->db, ticket);
  if (!t)
    return error_line("ticket comment", fmt::format("unknown ticket {}", ticket), exit_unknown);
  auto added = core::add_ticket_comment(*o->db, o->cfg, *t, text, send, now_s());
  if (!added)
    return error_line("ticket comment", added.error(), send ? exit_usage : exit_failed);
  storage::outbox_record entry = *added;
  core::outbox_send_report rep;
  if (send) {
    core::event_log log{o->cfg.engine};
    rep = core::send_due(*o->db, o->cfg.smtp, now_s(), nullptr, 100, &log);
    if (auto e = o->db->outbox_entry(entry.message_id))
      entry = *e;
  }
  if (json) {
    nlohmann::json out = {{"ticket", ticket}, {"message_id", entry.message_id}, {"sent", entry.state == "sent"}};
    if (send)
      out["outbox"] = entry_json(entry);
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{}: comment added ({})\n", ticket, entry.message_id);
    if (send) {
      print_send_report(rep);
      print_entry(entry);
    }
  }
  return !send || entry.state == "sent" ? exit_ok : exit_failed;
}

int run_outbox(const std::string& config_file, bool send, bool json) {
  int code = 0;
  auto o = open_rw(config_file, "outbox", code);
  if (!o)
    return code;
  core::outbox_send_report rep;
  if (send) {
    core::event_log log{o->cfg.engine};
    rep = core::send_due(*o->db, o->cfg.smtp, now_s(), nullptr, 100, &log);
  }
  auto entries = o->db->outbox();
  if (json) {
    auto list = nlohmann::json::array();
    for (auto& e : entries)
      list.push_back(entry_json(e));
    std::cout << nlohmann::json{{"outbox", list}}.dump(2) << "\n";
  } else {
    print_send_report(rep);
    for (auto& e : entries)
      print_entry(e);
    std::cout << fmt::format("{} message(s) in the outbox\n", entries.size());
  }
  return send && (rep.retrying || rep.failed) ? exit_failed : exit_ok;
}

} // namespace mscan::apps
