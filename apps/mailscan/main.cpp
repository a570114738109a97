// The `mailscan` command line (shared spec INTERFACE.md). Thin: parses arguments with CLI11
// (a well-kept Debian library: subcommands, typed options and usage errors for free) and calls
// the layers. Errors are one line on stderr: "mailscan: <what failed>: <why>".
#include "actors/engine.hpp"
#include "core/rules.hpp"
#include "protocols/mime/message.hpp"
#include "apps/mailscan/cluster.hpp"
#include "apps/mailscan/diagnose.hpp"
#include "apps/mailscan/mail_commands.hpp"
#include "apps/mailscan/oauth_cmd.hpp"
#include "apps/mailscan/status_server.hpp"
#include "apps/mailscan/output.hpp"
#include "bench/simulator/simulator.hpp"
#include "core/config.hpp"
#include "storage/store.hpp"

#include <CLI/CLI.hpp>
#include <ctime>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <iostream>

namespace {

using namespace mscan;

constexpr int exit_ok = 0;
constexpr int exit_usage = 2;
constexpr int exit_failed = 3;
constexpr int exit_unknown = 4;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
extern "C" void on_signal(int) { g_stop.store(true); }
extern "C" void on_hangup(int) { g_reload.store(true); }

int error_line(std::string_view what, std::string_view why, int code) {
  std::cerr << fmt::format("mailscan: {}: {}\n", what, why);
  return code;
}

std::optional<core::config> load(const std::string& file, int& code) {
  auto cfg = core::load_config(file);
  if (!cfg) {
    code = error_line("config", cfg.error().message, exit_usage);
    return std::nullopt;
  }
  return std::move(cfg.value());
}

// Opens the store for reading; a store that does not exist yet reads as empty.
std::unique_ptr<storage::store> open_for_reading(const core::config& cfg, std::string& err) {
  if (!std::filesystem::exists(cfg.engine.data_dir / "CURRENT"))
    return nullptr;
  storage::open_options o;
  o.create_if_missing = false;
  o.read_only = true;
  auto s = storage::store::open(cfg.engine.data_dir, o);
  if (!s) {
    err = s.error().message;
    return nullptr;
  }
  return std::move(s.value());
}

// What the read-only commands start with: the config, then the store opened for reading
// (nullptr when there is none yet). On failure `code` is the exit status, already reported.
struct reading {
  core::config cfg;
  std::unique_ptr<storage::store> db;
};

std::optional<reading> open_reading(const std::string& config_file, std::string_view command, int& code) {
  auto cfg = load(config_file, code);
  if (!cfg)
    return std::nullopt;
  std::string err;
  auto db = open_for_reading(*cfg, err);
  if (!err.empty()) {
    code = error_line(command, err, exit_failed);
    return std::nullopt;
  }
  return reading{std::move(*cfg), std::move(db)};
}

// What `run` prints after its passes; returns the exit code.
int print_run_report(const actors::engine_report& rep);

// `run`, or with `cluster_listen` the coordinator of a cluster (apps/mailscan/cluster.hpp).
int cmd_run(const std::string& config_file, bool once, const std::string* cluster_listen = nullptr) {
  int code = 0;
  auto cfg = load(config_file, code);
  if (!cfg)
    return code;
  if (int rc = apps::oauth_startup_check(*cfg); rc != 0)
    return rc;
  std::shared_ptr<actors::cluster_hooks> cluster;
  if (cluster_listen) {
    auto hooks = apps::make_cluster_hooks(*cfg, *cluster_listen);
    if (!hooks)
      return error_line("coordinator", hooks.error(), exit_usage);
    cluster = *hooks;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGHUP, on_hangup);
  actors::engine_options opts;
  opts.once = once;
  opts.stop = &g_stop;
  opts.reload = &g_reload;
  opts.cluster = cluster.get();
  if (auto rules = core::compile_rules(cfg->rules); !rules) {
    std::cerr << fmt::format("mailscan: config error: {}\n", rules.error().message);
    return 2;  // a config error, like the loader's: the rule is named
  }
  // [service] listen: the status service over the running engine, stopped after it.
  std::unique_ptr<apps::status_server> service;
  if (!cfg->service.listen.empty()) {
    auto srv = apps::start_run_service(*cfg, opts);
    if (!srv)
      return error_line("service", srv.error(), exit_usage);
    service = std::move(srv.value());
  }
  opts.on_shutdown_stuck = print_run_report;
  auto rep = actors::run_engine(*cfg, opts);
  service.reset();
  if (!rep)
    return error_line(cluster ? "coordinator" : "run", rep.error(), exit_failed);
  return print_run_report(*rep);
}

int print_run_report(const actors::engine_report& rep) {
  bool all_ok = true;
  for (auto& p : rep.passes) {
    if (p.reason == "stopped") {  // SIGINT/SIGTERM: an orderly stop is not a failure
      std::cout << fmt::format("{}: stopped ({} fetched, {} new)\n", p.user, p.fetched, p.new_messages);
    } else if (p.ok) {
      std::cout << fmt::format("{}: OK, {} fetched, {} new, {} new sightings\n", p.user, p.fetched,
                               p.new_messages, p.new_sightings);
    } else {
      all_ok = false;
      std::cout << fmt::format("{}: Error ({}): {}\n", p.user, p.reason, p.detail);
    }
  }
  std::cout << fmt::format("{} mailbox(es) scanned, {} message(s) in the store\n", rep.passes.size(),
                           rep.messages_in_store);
  return all_ok ? exit_ok : exit_failed;
}

int cmd_query(const std::string& config_file, const std::string& what, const storage::message_filter& f,
              bool json) {
  int code = 0;
  auto rd = open_reading(config_file, "query", code);
  if (!rd)
    return code;
  const core::config* cfg = &rd->cfg;
  auto& db = rd->db;
  if (what == "messages") {
    std::vector<storage::message_record> msgs;
    if (db)
      msgs = db->query_messages(f);
    if (json)
      std::cout << apps::messages_json(msgs).dump(2) << "\n";
    else
      apps::print_messages(std::cout, msgs);
    return exit_ok;
  }
  // Tickets, rule-created contacts and alerts are derived from every tracked message's link
  // reasons (filters narrow the messages looked at).
  std::vector<storage::message_record> msgs;
  if (db)
    msgs = db->query_messages(storage::message_filter{.user = f.user, .contact = f.contact,
                                                      .account = f.account, .item = f.item, .limit = 0});
  nlohmann::json out;
  if (what == "tickets")
    out = apps::tickets_json(msgs);
  else if (what == "contacts")
    out = apps::contacts_json(*cfg, msgs);
  else
    out = apps::alerts_json(msgs);
  if (json)
    std::cout << out.dump(2) << "\n";
  else
    apps::print_list(std::cout, out);
  return exit_ok;
}

// `rules dry-run`: the rules over mail already tracked, from the stored fields (from, to, cc,
// subject, date, folder). Body, Bcc and attachments are not stored, so conditions on them
// see empty values: the output says so. Read-only: touches neither the store nor a server.
int cmd_rules_dry_run(const std::string& config_file, const std::string& user, const std::string& since) {
  int code = 0;
  auto cfg = load(config_file, code);
  if (!cfg)
    return code;
  auto rules = core::compile_rules(cfg->rules);
  if (!rules)
    return error_line("rules", fmt::format("config error: {}", rules.error().message), exit_usage);
  std::int64_t since_t = 0;
  if (!since.empty()) {
    auto d = mime::parse_date(since.size() == 10 ? since + " 00:00:00 +0000" : since);
    std::tm tm{};
    if (!d && since.size() == 10 && strptime(since.c_str(), "%Y-%m-%d", &tm))
      d = timegm(&tm);
    if (!d)
      return error_line("rules", fmt::format("--since: '{}' is not a date (YYYY-MM-DD)", since), exit_usage);
    since_t = *d;
  }
  std::string err;
  auto db = open_for_reading(*cfg, err);
  if (!err.empty())
    return error_line("rules", err, exit_failed);
  std::vector<storage::message_record> msgs;
  if (db)
    msgs = db->query_messages(storage::message_filter{.user = user, .contact = {}, .account = {}, .item = {}, .limit = 0});
  std::cout << "dry run over tracked mail (body, bcc and has_attachment are not stored: conditions on "
               "them see empty values); nothing is changed\n";
  std::size_t would = 0;
  for (auto& rec : msgs) {
    if (since_t && rec.date < since_t)
      continue;
    mime::message m;
    m.message_id = rec.message_id;
    m.subject = rec.subject;
    m.normalized_subject = mime::normalize_subject(rec.subject);
    if (rec.date)
      m.date = rec.date;
    m.from = mime::parse_address_list(rec.from);
    for (auto& a : rec.to)
      for (auto& x : mime::parse_address_list(a))
        m.to.push_back(x);
    for (auto& a : rec.cc)
      for (auto& x : mime::parse_address_list(a))
        m.cc.push_back(x);
    for (auto& s : rec.sightings) {
      if (!user.empty() && s.user != user)
        continue;
      for (auto& hit : core::evaluate(*rules, m, s.user, s.folder)) {
        ++would;
        std::string acts;
        for (std::size_t i = 0; i < hit.actions.size(); ++i) {
          auto& a = hit.actions[i];
          std::string what = a.type;
          if (a.type == "move")
            what += " to " + a.folder;
          if (a.type == "create_or_update_ticket") {
            std::optional<std::string> n;
            if (i < hit.tickets.size() && !hit.tickets[i].pattern().empty())
              n = hit.tickets[i].find(rec.subject);
            what += n ? " (update " + *n + ")" : std::string{" (create)"};
          }
          acts += (acts.empty() ? "" : ", ") + what;
        }
        std::cout << fmt::format("{} [{} / {}] {}: rule '{}' would: {}\n",
                                 rec.message_id.empty() ? rec.key : rec.message_id, s.user, s.folder,
                                 rec.subject, hit.name, acts.empty() ? "nothing (no actions)" : acts);
        for (auto& c : hit.because)
          std::cout << fmt::format("    because {} {} {} '{}'{}\n", c.path, c.field, c.op, c.value,
                                   c.matched.empty() ? "" : fmt::format(" matched '{}'", c.matched));
      }
    }
  }
  std::cout << fmt::format("{} rule hit(s) over {} tracked message(s)\n", would, msgs.size());
  return exit_ok;
}

int cmd_status(const std::string& config_file, bool json) {
  int code = 0;
  auto rd = open_reading(config_file, "status", code);
  if (!rd)
    return code;
  const core::config* cfg = &rd->cfg;
  auto& db = rd->db;
  std::vector<storage::mailbox_state> states;
  for (auto& m : cfg->mailboxes) {
    storage::mailbox_state s;
    if (db)
      if (auto st = db->mailbox_state_of(m.user))
        s = *st;
    s.user = m.user;
    if (m.disable_mail_scan)
      s.state = "disabled";
    states.push_back(std::move(s));
  }
  // Oldest last-scanned first (never scanned = oldest), so stale mailboxes stand out.
  std::stable_sort(states.begin(), states.end(),
                   [](auto& a, auto& b) { return a.last_scanned < b.last_scanned; });
  auto rules = apps::rules_json(*cfg, db ? db->rule_stats() : std::vector<storage::rule_stat>{});
  auto notes = nlohmann::json::array();  // the newest operator notifications, newest first
  if (db)
    for (auto& n : db->notifications(20))
      notes.push_back(apps::notification_json(n));
  auto out = apps::status_json(states);
  apps::add_cluster_status(*cfg, out);  // nodes and each mailbox's node, when a coordinator ran
  if (json) {
    out["rules"] = std::move(rules);  // an extra top-level list: the mailboxes shape is unchanged
    out["notifications"] = notes;
    std::cout << out.dump(2) << "\n";
  } else {
    apps::print_status(std::cout, states);
    apps::print_cluster_status(std::cout, out);
    for (auto& r : rules)
      std::cout << fmt::format("rule {}: {} hit(s), last {}\n", r["name"].get<std::string>(),
                               r["hits"].get<std::uint64_t>(),
                               r["last_hit"].is_null() ? "never" : r["last_hit"].get<std::string>());
  }
  if (!json)
    apps::print_notifications(std::cout, notes);
  return exit_ok;
}

int cmd_explain(const std::string& config_file, const std::string& message_id) {
  int code = 0;
  auto rd = open_reading(config_file, "explain", code);
  if (!rd)
    return code;
  auto& db = rd->db;
  auto rec = db ? db->find_by_message_id(message_id) : std::nullopt;
  if (!rec)
    return error_line("explain", fmt::format("unknown message {}", message_id), exit_unknown);
  apps::print_explain(std::cout, *rec);
  return exit_ok;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"mailscan: tracks e-mail for a CRM"};
  app.require_subcommand(1);
  std::string config_file;
  bool json = false;

  auto run = app.add_subcommand("run", "scan every enabled mailbox");
  bool once = false;
  run->add_option("--config", config_file, "config file (TOML)")->required();
  run->add_flag("--once", once, "one full pass, then exit");

  auto query = app.add_subcommand("query", "tracked messages, tickets or contacts");
  std::string what;
  storage::message_filter filter;
  query->add_option("--config", config_file)->required();
  query->add_option("what", what, "messages | tickets | contacts | alerts")
    ->required()
    ->check(CLI::IsMember({"messages", "tickets", "contacts", "alerts"}));
  query->add_option("--user", filter.user);
  query->add_option("--contact", filter.contact);
  query->add_option("--account", filter.account);
  query->add_option("--item", filter.item);
  query->add_option("--limit", filter.limit);
  query->add_flag("--json", json);

  auto status = app.add_subcommand("status", "per-mailbox state");
  status->add_option("--config", config_file)->required();
  status->add_flag("--json", json);

  auto explain = app.add_subcommand("explain", "why a message is linked to what");
  std::string message_id;
  explain->add_option("--config", config_file)->required();
  explain->add_option("message_id", message_id)->required();

  auto rules_cmd = app.add_subcommand("rules", "scanner rules");
  auto dry_run = rules_cmd->add_subcommand("dry-run", "what the rules would do to tracked mail (changes nothing)");
  std::string dry_user, dry_since;
  dry_run->add_option("--config", config_file)->required();
  dry_run->add_option("--user", dry_user);
  dry_run->add_option("--since", dry_since, "YYYY-MM-DD");
  rules_cmd->require_subcommand(1);

  // Operations (apps/mailscan/diagnose.hpp).
  auto diagnose = app.add_subcommand("diagnose", "connection test of every mailbox");
  diagnose->add_option("--config", config_file)->required();
  diagnose->add_flag("--json", json);
  auto test_mailbox = app.add_subcommand("test-mailbox", "the connection test of one user, in full");
  std::string ops_user;
  test_mailbox->add_option("--config", config_file)->required();
  test_mailbox->add_option("user", ops_user)->required();
  test_mailbox->add_flag("--json", json);
  auto force_sync = app.add_subcommand("force-sync", "lift credentials_changed: log in once more");
  force_sync->add_option("--config", config_file)->required();
  force_sync->add_option("user", ops_user)->required();
  auto serve = app.add_subcommand("serve", "the status service and dashboard over the store ([service])");
  std::string serve_listen;
  serve->add_option("--config", config_file)->required();
  serve->add_option("--listen", serve_listen, "HOST:PORT (default: [service] listen, else 127.0.0.1:8080)");

  // Ticket comments by e-mail (apps/mailscan/mail_commands.hpp).
  auto ticket_cmd = app.add_subcommand("ticket", "tickets");
  auto ticket_comment = ticket_cmd->add_subcommand("comment", "add a comment to a ticket; --send e-mails it to the contact");
  std::string ticket_no, comment_text;
  bool send_mail = false;
  ticket_comment->add_option("--config", config_file)->required();
  ticket_comment->add_option("ticket", ticket_no)->required();
  ticket_comment->add_option("--text", comment_text)->required();
  ticket_comment->add_flag("--send", send_mail, "queue the comment e-mail and send it now");
  ticket_comment->add_flag("--json", json);
  ticket_cmd->require_subcommand(1);
  auto outbox = app.add_subcommand("outbox", "outgoing mail and its send state");
  outbox->add_option("--config", config_file)->required();
  outbox->add_flag("--send", send_mail, "first send what is due");
  outbox->add_flag("--json", json);
  auto oauth = app.add_subcommand("oauth", "OAuth2 secrets: a secrets key, sealed refresh tokens and client secrets");
  oauth->require_subcommand(1);
  auto oauth_new_key = oauth->add_subcommand("new-key", "print a new secrets key (64 hex digits)");
  std::string credential;
  auto oauth_store = oauth->add_subcommand("store-token", "seal a refresh token read from stdin into the "
                                                          "credential's refresh_token_file");
  oauth_store->add_option("--config", config_file)->required();
  oauth_store->add_option("credential", credential)->required();
  auto oauth_seal = oauth->add_subcommand("seal", "print a client secret read from stdin sealed, for a "
                                                  "client_secret_file");
  oauth_seal->add_option("--config", config_file)->required();
  oauth_seal->add_option("credential", credential)->required();
  auto coordinator = app.add_subcommand("coordinator", "a cluster's coordinator: nodes that join scan the mailboxes");
  std::string cluster_listen;
  coordinator->add_option("--config", config_file)->required();
  coordinator->add_option("--listen", cluster_listen, "127.0.0.1:PORT (loopback only; 0 = any free port)")->required();
  coordinator->add_flag("--once", once, "one full pass over every mailbox across the cluster, then exit");
  auto node = app.add_subcommand("node", "a cluster node: scans the mailboxes the coordinator leases it");
  apps::node_command node_cmd;
  node->add_option("--join", node_cmd.join, "the coordinator's 127.0.0.1:PORT")->required();
  node->add_option("--name", node_cmd.name, "node name (default HOSTNAME-PID); mailboxes are assigned by it");
  node->add_option("--rejoin-s", node_cmd.rejoin_s, "how long to retry when the coordinator is lost");
  node->add_option("--fake-protocol-version", node_cmd.fake_protocol_version)->group("");  // tests only

  auto simulate = app.add_subcommand("simulate", "the embedded IMAP simulator");
  sim::sim_options so;
  std::string listen = "127.0.0.1:0";
  simulate->add_option("--listen", listen, "127.0.0.1:PORT (loopback only)");
  simulate->add_option("--mailboxes", so.mailboxes)->required();
  simulate->add_option("--messages", so.messages)->required();
  simulate->add_option("--seed", so.seed);
  simulate->add_option("--latency-ms", so.latency_ms);
  simulate->add_option("--max-connections", so.max_connections);
  simulate->add_option("--message-bytes", so.message_bytes);
  simulate->add_option("--report", so.report_file);
  simulate->add_option("--eml-dir", so.eml_dir, "serve the .eml files in this directory instead of generated mail");
  simulate->add_option("--fault-wrong-password", so.faults.wrong_password, "fraction of users whose LOGIN fails");
  simulate->add_option("--fault-disconnect", so.faults.disconnect_mid_fetch, "fraction disconnected mid-FETCH");
  simulate->add_option("--fault-slow", so.faults.slow, "fraction answering slowly after login");
  simulate->add_option("--fault-uidvalidity", so.faults.uidvalidity_reset, "fraction with a UIDVALIDITY reset");
  simulate->add_option("--fault-slow-ms", so.faults.slow_ms, "delay of the slow fault (ms)");
  simulate->add_option("--fault-throttle", so.faults.throttle, "fraction whose LOGIN is refused as throttled");
  simulate->add_option("--fault-throttle-s", so.faults.throttle_s, "seconds the throttling lasts (0 = always)");
  simulate->add_option("--fault-throttle-answer", so.faults.throttle_answer, "the throttled LOGIN's tagged answer");

  auto demo = app.add_subcommand("demo", "scan the embedded simulator's mailboxes and show what was tracked");
  std::string demo_dir = "demo-data";
  std::size_t demo_mailboxes = 5, demo_messages = 40;
  demo->add_option("--dir", demo_dir, "where the demo's config, store and logs go");
  demo->add_option("--mailboxes", demo_mailboxes);
  demo->add_option("--messages", demo_messages);
  std::string demo_eml;
  demo->add_option("--eml-dir", demo_eml, "the simulator serves these .eml files instead of generated mail");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << fmt::format("mailscan: usage: {}\n", e.what());
    return exit_usage;
  }

  try {
    if (*run)
      return cmd_run(config_file, once);
    if (*query)
      return cmd_query(config_file, what, filter, json);
    if (*status)
      return cmd_status(config_file, json);
    if (*explain)
      return cmd_explain(config_file, message_id);
    if (*dry_run)
      return cmd_rules_dry_run(config_file, dry_user, dry_since);
    if (*diagnose)
      return apps::run_diagnose(config_file, json);
    if (*test_mailbox)
      return apps::run_test_mailbox(config_file, ops_user, json);
    if (*force_sync)
      return apps::run_force_sync(config_file, ops_user);
    if (*ticket_comment)
      return apps::run_ticket_comment(config_file, ticket_no, comment_text, send_mail, json);
    if (*outbox)
      return apps::run_outbox(config_file, send_mail, json);
    if (*serve)
      return apps::run_serve(config_file, serve_listen);
    if (*oauth_new_key)
      return apps::run_oauth_new_key();
    if (*oauth_store)
      return apps::run_oauth_store_token(config_file, credential, std::cin);
    if (*oauth_seal)
      return apps::run_oauth_seal(config_file, credential, std::cin);
    if (*coordinator)
      return cmd_run(config_file, once, &cluster_listen);
    if (*node) {
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      return apps::run_node_command(node_cmd, &g_stop);
    }
    if (*simulate) {
      auto addr = sim::parse_listen_address(listen);
      if (!addr)
        return error_line("simulate", fmt::format("--listen {}: {}", listen, addr.error()), exit_usage);
      so.host = addr->first;
      so.port = addr->second;
      return sim::run_simulate_command(so);
    }
    if (*demo)
      return apps::run_demo(demo_dir, demo_mailboxes, demo_messages, demo_eml);
  } catch (const std::exception& e) {
    return error_line("internal error", e.what(), 1);
  }
  return exit_usage;
}
