#include "apps/mailscan/output.hpp"
#include "common/text.hpp"
#include <algorithm>
#include <set>
#include <map>

#include <fmt/format.h>

#include <ctime>

namespace mscan::apps {

std::string iso8601(std::int64_t t) {
  return iso8601_utc(t);
}

nlohmann::json messages_json(const std::vector<storage::message_record>& msgs) {
  auto arr = nlohmann::json::array();
  for (auto& m : msgs) {
    auto sightings = nlohmann::json::array();
    for (auto& s : m.sightings)
      sightings.push_back({{"user", s.user}, {"folder", s.folder}, {"uid", s.uid}});
    auto atts = nlohmann::json::array();
    for (auto& a : m.attachments)
      atts.push_back({{"name", a.name}, {"type", a.type}, {"size", a.size}});
    arr.push_back({{"message_id", m.message_id},
                   {"subject", m.subject},
                   {"from", m.from},
                   {"to", m.to},
                   {"cc", m.cc},
                   {"date", m.date ? nlohmann::json(iso8601(m.date)) : nlohmann::json(nullptr)},
                   {"sightings", sightings},
                   {"users", m.users},
                   {"contacts", m.contacts},
                   {"accounts", m.accounts},
                   {"items", m.items},
                   {"tickets", m.tickets},
                   {"attachments", atts},
                   {"warnings", m.warnings}});
  }
  return {{"messages", arr}};
}

nlohmann::json status_json(const std::vector<storage::mailbox_state>& states) {
  auto arr = nlohmann::json::array();
  for (auto& s : states) {
    nlohmann::json err = nullptr;
    if (!s.last_error_reason.empty())
      err = {{"reason", s.last_error_reason}, {"detail", s.last_error_detail}};
    arr.push_back({{"user", s.user},
                   {"state", s.state},
                   {"last_scanned", s.last_scanned ? nlohmann::json(iso8601(s.last_scanned)) : nlohmann::json(nullptr)},
                   {"consecutive_failures", s.consecutive_failures},
                   {"last_error", err},
                   {"messages_tracked", s.messages_tracked}});
  }
  return {{"mailboxes", arr}};
}

namespace {
std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v)
    out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "-" : out;
}
} // namespace

void print_messages(std::ostream& os, const std::vector<storage::message_record>& msgs) {
  for (auto& m : msgs) {
    os << fmt::format("{}  {}  {}\n", m.date ? iso8601(m.date) : std::string{"(no date)"}, m.message_id,
                      m.subject);
    os << fmt::format("    from {}; contacts: {}; accounts: {}; items: {}; seen by {} ({} sighting(s))\n",
                      m.from.empty() ? "-" : m.from, join(m.contacts), join(m.accounts), join(m.items),
                      join(m.users), m.sightings.size());
  }
  os << fmt::format("{} message(s)\n", msgs.size());
}

void print_status(std::ostream& os, const std::vector<storage::mailbox_state>& states) {
  os << fmt::format("{:<20} {:<20} {:<22} {:>8} {:>9}  {}\n", "USER", "STATE", "LAST SCANNED", "FAILURES",
                    "MESSAGES", "LAST ERROR");
  for (auto& s : states)
    os << fmt::format("{:<20} {:<20} {:<22} {:>8} {:>9}  {}\n", s.user, s.state,
                      s.last_scanned ? iso8601(s.last_scanned) : "never", s.consecutive_failures,
                      s.messages_tracked,
                      s.last_error_reason.empty() ? "-" : s.last_error_reason + ": " + s.last_error_detail);
}

void print_explain(std::ostream& os, const storage::message_record& m) {
  os << fmt::format("{}\n  subject: {}\n  from: {}\n  date: {}\n", m.message_id, m.subject, m.from,
                    m.date ? iso8601(m.date) : "-");
  for (auto& s : m.sightings)
    os << fmt::format("  seen: {} / {} uid {} (uidvalidity {})\n", s.user, s.folder, s.uid, s.uidvalidity);
  for (auto& r : m.reasons)
    os << fmt::format("  linked to {} {}: because {}\n", r.kind, r.target, r.cause);
  for (auto& w : m.warnings)
    os << fmt::format("  warning: {}\n", w);
}

namespace {
std::string message_ref(const storage::message_record& m) {
  return m.message_id.empty() ? m.key : m.message_id;
}
} // namespace

nlohmann::json tickets_json(const std::vector<storage::message_record>& msgs) {
  // Oldest first so a ticket's creating message is seen before its replies.
  std::vector<const storage::message_record*> order;
  for (auto& m : msgs)
    order.push_back(&m);
  std::stable_sort(order.begin(), order.end(), [](auto a, auto b) { return a->date < b->date; });
  std::map<std::string, nlohmann::json> tickets;
  auto ticket = [&](const std::string& number) -> nlohmann::json& {
    auto [it, fresh] = tickets.try_emplace(number);
    if (fresh)
      it->second = {{"number", number}, {"subject", nullptr}, {"status", nullptr}, {"assignee", nullptr},
                    {"contact", nullptr}, {"message_ids", nlohmann::json::array()},
                    {"comments", nlohmann::json::array()}};
    return it->second;
  };
  for (auto m : order) {
    for (auto& r : m->reasons) {
      if (r.kind == "ticket") {
        auto& t = ticket(r.target);
        t["message_ids"].push_back(message_ref(*m));
        if (t["subject"].is_null())
          t["subject"] = m->subject;
        if (t["contact"].is_null() && !m->from.empty())
          t["contact"] = m->from;
      } else if (r.kind == "ticket_status") {
        ticket(r.target)["status"] = r.cause;
      } else if (r.kind == "ticket_assignee") {
        ticket(r.target)["assignee"] = r.cause;
      } else if (r.kind == "ticket_priority") {
        ticket(r.target)["priority"] = r.cause;
      } else if (r.kind == "comment") {
        ticket(r.target)["comments"].push_back({{"message_id", message_ref(*m)}, {"text", r.cause}});
      }
    }
  }
  auto list = nlohmann::json::array();
  for (auto& [n, t] : tickets)
    list.push_back(std::move(t));
  return {{"tickets", std::move(list)}};
}

nlohmann::json contacts_json(const core::config& cfg, const std::vector<storage::message_record>& msgs) {
  auto list = nlohmann::json::array();
  std::set<std::string> seen;
  for (auto& c : cfg.contacts) {
    list.push_back({{"email", c.email}, {"name", c.name},
                    {"account", c.account.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.account)},
                    {"created_by_rule", nullptr}});
    seen.insert(c.email);
  }
  for (auto& m : msgs) {
    for (auto& r : m.reasons) {
      if (r.kind != "contact_created" || !seen.insert(r.target).second)
        continue;
      nlohmann::json account = nullptr;
      for (auto& a : m.reasons)
        if (a.kind == "contact_account" && a.target == r.target)
          account = a.cause;
      list.push_back({{"email", r.target}, {"name", ""}, {"account", account}, {"created_by_rule", r.cause}});
    }
  }
  return {{"contacts", std::move(list)}};
}

nlohmann::json alerts_json(const std::vector<storage::message_record>& msgs) {
  auto list = nlohmann::json::array();
  for (auto& m : msgs)
    for (auto& r : m.reasons)
      if (r.kind == "alert")
        list.push_back({{"reference", r.target}, {"kind", r.cause}, {"message_id", message_ref(m)},
                        {"subject", m.subject}, {"date", m.date ? nlohmann::json(iso8601(m.date)) : nlohmann::json(nullptr)}});
  return {{"alerts", std::move(list)}};
}

void print_list(std::ostream& os, const nlohmann::json& obj) {
  for (auto& [name, list] : obj.items()) {
    if (list.empty())
      os << fmt::format("no {}\n", name);
    for (auto& e : list) {
      std::string line;
      for (auto& [k, v] : e.items()) {
        if (v.is_null() || (v.is_array() && v.empty()))
          continue;
        line += fmt::format("{}{}={}", line.empty() ? "" : "  ", k, v.is_string() ? v.get<std::string>() : v.dump());
      }
      os << line << "\n";
    }
  }
}

nlohmann::json rules_json(const core::config& cfg, const std::vector<storage::rule_stat>& stats) {
  auto list = nlohmann::json::array();
  for (auto& rule : cfg.rules) {
    auto it = std::find_if(stats.begin(), stats.end(), [&](auto& s) { return s.name == rule.name; });
    std::uint64_t n = it == stats.end() ? 0 : it->hits;
    std::int64_t last = it == stats.end() ? 0 : it->last_hit;
    list.push_back({{"name", rule.name}, {"active", rule.active}, {"hits", n},
                    {"last_hit", n && last ? nlohmann::json(iso8601(last)) : nlohmann::json(nullptr)}});
  }
  return list;
}

} // namespace mscan::apps
