#include "apps/mailscan/diagnose.hpp"

#include "apps/mailscan/oauth_cmd.hpp"

#include "core/mailbox_health.hpp"
#include "core/rules.hpp"
#include "storage/store.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <iostream>
#include <map>
#include <mutex>

namespace mscan::apps {

int error_line(std::string_view what, std::string_view why, int code) {
  std::cerr << fmt::format("mailscan: {}: {}\n", what, why);
  return code;
}

namespace {

constexpr int exit_ok = 0, exit_usage = 2, exit_failed = 3;

// The protocol layer never echoes a secret, but a server may (some echo the LOGIN line).
std::string redact(std::string text, const core::mailbox_config& m) {
  if (m.secret.size() >= 3)
    for (auto pos = text.find(m.secret); pos != std::string::npos; pos = text.find(m.secret, pos))
      text.replace(pos, m.secret.size(), "[redacted]");
  return text;
}

std::string auth_used(const core::mailbox_config& m) {
  if (m.type == core::mail_protocol::pop3)
    return m.auth == core::auth_kind::xoauth2 ? "xoauth2 (AUTH XOAUTH2)"
                                              : "password (AUTH PLAIN when offered, else USER/PASS, else APOP)";
  return m.auth == core::auth_kind::xoauth2 ? "xoauth2 (AUTHENTICATE XOAUTH2)"
                                            : "password (LOGIN, or AUTHENTICATE PLAIN when LOGIN is disabled)";
}

diagnosis base(const core::mailbox_config& m) {
  diagnosis d;
  d.user = m.user;
  d.host = m.host;
  d.port = m.port;
  d.protocol = std::string(core::to_string(m.type));
  d.security = std::string(core::to_string(m.security));
  d.auth = auth_used(m);
  d.username = m.username;
  return d;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (auto& s : v)
    out += (out.empty() ? "" : std::string(sep)) + s;
  return out;
}

} // namespace

diagnosis not_set(const core::mailbox_config& m) {
  auto d = base(m);
  d.result = "Not Set";
  std::vector<std::string> missing;
  if (m.host.empty())
    missing.push_back("host");
  if (m.username.empty())
    missing.push_back("username");
  if (m.secret.empty())
    missing.push_back(m.auth == core::auth_kind::xoauth2 ? "token" : "password");
  d.detail = fmt::format("not configured: no {}", join(missing, ", no "));
  if (!m.secret_problem.empty() && m.secret.empty())
    d.detail += fmt::format(" ({})", m.secret_problem);
  d.next_step = fmt::format("set {} in the mailbox's config entry (password_env, password_file or password "
                            "for the secret), then run `mailscan test-mailbox {}`",
                            join(missing, ", "), m.user);
  return d;
}

diagnosis from_pass(const core::mailbox_config& m, const actors::pass_result& p) {
  auto d = base(m);
  d.capabilities = p.capabilities;
  d.folders = p.folders;
  d.server_id = p.server_id;
  if (p.ok) {
    d.result = "OK";
    d.detail = fmt::format("connected, logged in, {} folder(s) opened", p.folders.size());
    return d;
  }
  d.result = "Error";
  d.reason = p.reason.empty() ? "protocol_error" : p.reason;
  d.detail = redact(p.detail, m);
  d.next_step = core::next_step(d.reason, d.detail);
  if (d.reason == "folder_not_found" && !p.folders.empty()) {
    std::vector<std::string> names;
    for (auto& f : p.folders)
      names.push_back(f.name);
    d.next_step += fmt::format("; folders opened before it: {}", join(names, ", "));
  }
  return d;
}

nlohmann::json diagnoses_json(const std::vector<diagnosis>& ds, bool full) {
  auto arr = nlohmann::json::array();
  for (auto& d : ds) {
    nlohmann::json j{{"user", d.user},
                     {"result", d.result},
                     {"reason", d.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(d.reason)},
                     {"detail", d.detail},
                     {"next_step", d.next_step}};
    if (full) {
      auto folders = nlohmann::json::array();
      for (auto& f : d.folders)
        folders.push_back({{"name", f.name}, {"messages", f.exists}});
      j["host"] = d.host;
      j["port"] = d.port;
      j["protocol"] = d.protocol;
      j["security"] = d.security;
      j["auth"] = d.auth;
      j["username"] = d.username;
      j["capabilities"] = d.capabilities;
      j["folders"] = folders;
      auto id = nlohmann::json::object();
      for (auto& [k, v] : d.server_id)
        id[k] = v;
      j["server_id"] = id;
    }
    arr.push_back(std::move(j));
  }
  return {{"mailboxes", arr}};
}

void print_diagnoses(std::ostream& os, const std::vector<diagnosis>& ds) {
  std::map<std::string, std::size_t> counts;
  for (auto& d : ds) {
    ++counts[d.result];
    if (d.result == "OK")
      os << fmt::format("{:<20} OK       {}\n", d.user, d.detail);
    else if (d.result == "Not Set")
      os << fmt::format("{:<20} Not Set  {}\n{:<20}          next step: {}\n", d.user, d.detail, "", d.next_step);
    else
      os << fmt::format("{:<20} Error    {}: {}\n{:<20}          next step: {}\n", d.user, d.reason, d.detail, "",
                        d.next_step);
  }
  os << fmt::format("{} mailbox(es): {} OK, {} Error, {} Not Set\n", ds.size(), counts["OK"], counts["Error"],
                    counts["Not Set"]);
}

void print_mailbox_detail(std::ostream& os, const diagnosis& d) {
  os << fmt::format("user:         {}\n", d.user);
  os << fmt::format("result:       {}\n", d.result);
  if (!d.reason.empty())
    os << fmt::format("reason:       {}\n", d.reason);
  os << fmt::format("detail:       {}\n", d.detail);
  if (!d.next_step.empty())
    os << fmt::format("next step:    {}\n", d.next_step);
  os << fmt::format("server:       {}:{} ({}, {})\n", d.host.empty() ? "-" : d.host, d.port, d.protocol, d.security);
  os << fmt::format("username:     {}\n", d.username.empty() ? "-" : d.username);
  os << "secret:       [redacted]\n";
  os << fmt::format("auth:         {}\n", d.auth);
  os << fmt::format("capabilities: {}\n", d.capabilities.empty() ? "-" : join(d.capabilities, " "));
  std::vector<std::string> id;
  for (auto& [k, v] : d.server_id)
    id.push_back(fmt::format("{}={}", k, v));
  os << fmt::format("server id:    {}\n", id.empty() ? "-" : join(id, " "));
  os << fmt::format("folders:      {}\n", d.folders.size());
  for (auto& f : d.folders)
    os << fmt::format("  {:<40} {:>8} message(s)\n", f.name, f.exists);
}

int diagnose_exit_code(const std::vector<diagnosis>& ds) {
  for (auto& d : ds)
    if (d.result == "Error")
      return exit_failed;
  return exit_ok;
}

progress_reporter::progress_reporter(std::ostream& os, bool tty, std::size_t total)
    : os_(os), tty_(tty), total_(total) {}

namespace {
std::mutex g_progress_mutex;
}

void progress_reporter::finished(const std::string& user, bool ok, std::size_t done) {
  std::lock_guard lock(g_progress_mutex);
  errors_ += ok ? 0 : 1;
  if (tty_) {
    constexpr std::size_t width = 30;
    const std::size_t filled = total_ ? done * width / total_ : width;
    os_ << fmt::format("\r[{}{}] {}/{} tested, {} error(s)", std::string(filled, '#'),
                       std::string(width - filled, '-'), done, total_, errors_)
        << std::flush;
    drawn_ = true;
  } else {
    os_ << fmt::format("[{}/{}] {}: {}\n", done, total_, user, ok ? "OK" : "Error") << std::flush;
  }
}

void progress_reporter::done() {
  std::lock_guard lock(g_progress_mutex);
  if (tty_ && drawn_)
    os_ << "\r\033[K" << std::flush;
  drawn_ = false;
}

expected<std::vector<diagnosis>, std::string> diagnose_all(const core::config& cfg, const probe_fn& probe,
                                                           progress_reporter* progress) {
  core::config to_probe = cfg;
  to_probe.mailboxes.clear();
  for (auto m : cfg.mailboxes)
    if (m.is_set()) {
      m.disable_mail_scan = false;
      m.scan_emails = true;
      to_probe.mailboxes.push_back(std::move(m));
    }
  std::map<std::string, actors::pass_result> results;
  // Before the probe: a probe that refreshes the token makes it "used" again.
  const auto idle = oauth_idle_warnings(cfg);
  if (!to_probe.mailboxes.empty()) {
    actors::engine_options o;
    o.once = true;
    o.mode = actors::engine_mode::probe;
    if (progress)
      o.on_progress = [progress](const actors::pass_result& p, std::size_t done, std::size_t) {
        progress->finished(p.user, p.ok, done);
      };
    auto rep = probe ? probe(to_probe, o) : actors::run_engine(to_probe, o);
    if (progress)
      progress->done();
    if (!rep)
      return unexpected{rep.error()};
    for (auto& p : rep->passes)
      results[p.user] = p;
  }
  std::vector<diagnosis> out;
  for (auto& m : cfg.mailboxes) {
    if (!m.is_set()) {
      out.push_back(not_set(m));
      continue;
    }
    auto it = results.find(m.user);
    if (it == results.end()) {
      actors::pass_result missing;
      missing.user = m.user;
      missing.reason = "timeout";
      missing.detail = "the probe ended before this mailbox was tested";
      out.push_back(from_pass(m, missing));
    } else {
      out.push_back(from_pass(m, it->second));
    }
    if (auto w = idle.find(m.user); w != idle.end()) {
      auto& d = out.back();
      d.detail += "; warning: " + w->second;
      if (d.next_step.empty())
        d.next_step = "keep the refresh token in use (scan regularly) or re-authorise before it expires";
    }
  }
  return out;
}

int run_diagnose(const std::string& config_file, bool json, const probe_fn& probe) {
  auto cfg = core::load_config(config_file);
  if (!cfg)
    return error_line("config", cfg.error().message, exit_usage);
  if (int rc = oauth_startup_check(*cfg); rc != 0)
    return rc;
  std::size_t set = 0;
  for (auto& m : cfg->mailboxes)
    set += m.is_set() ? 1 : 0;
  // The JSON document is the whole of stdout; progress then stays off.
  std::optional<progress_reporter> progress;
  if (!json)
    progress.emplace(std::cout, ::isatty(1) == 1, set);
  auto ds = diagnose_all(*cfg, probe, progress ? &*progress : nullptr);
  if (!ds)
    return error_line("diagnose", ds.error(), exit_failed);
  if (json)
    std::cout << diagnoses_json(*ds, false).dump(2) << "\n";
  else
    print_diagnoses(std::cout, *ds);
  return diagnose_exit_code(*ds);
}

int run_test_mailbox(const std::string& config_file, const std::string& user, bool json, const probe_fn& probe) {
  auto cfg = core::load_config(config_file);
  if (!cfg)
    return error_line("config", cfg.error().message, exit_usage);
  if (int rc = oauth_startup_check(*cfg); rc != 0)
    return rc;
  auto m = cfg->find_mailbox(user);
  if (!m)
    return error_line("test-mailbox", fmt::format("no mailbox for user '{}' in {}", user, config_file), exit_usage);
  auto one = *cfg;
  one.mailboxes = {*m};
  auto ds = diagnose_all(one, probe, nullptr);
  if (!ds)
    return error_line("test-mailbox", ds.error(), exit_failed);
  // The fetch path a scan of this mailbox takes (decided from the config, not the server).
  const auto why = core::text_needed_by(cfg->engine, cfg->rules, user);
  const std::string path = why ? "headers and text" : "headers only";
  const std::string reason = why ? *why : "no rule reads the message text";
  if (json) {
    auto j = diagnoses_json(*ds, true);
    j["mailboxes"][0]["fetch"] = why ? "text" : "headers";
    j["mailboxes"][0]["fetch_reason"] = reason;
    std::cout << j.dump(2) << "\n";
  } else {
    print_mailbox_detail(std::cout, ds->front());
    std::cout << fmt::format("fetch:        {} ({})\n", path, reason);
  }
  return diagnose_exit_code(*ds);
}

int run_force_sync(const std::string& config_file, const std::string& user) {
  auto cfg = core::load_config(config_file);
  if (!cfg)
    return error_line("config", cfg.error().message, exit_usage);
  if (!cfg->find_mailbox(user))
    return error_line("force-sync", fmt::format("no mailbox for user '{}' in {}", user, config_file), exit_usage);
  storage::open_options o;
  o.create_if_missing = false;
  auto db = storage::store::open(cfg->engine.data_dir, o);
  if (!db) {
    if (db.error().kind == storage::error::code::not_found) {
      std::cout << fmt::format("{}: never scanned, nothing to lift\n", user);
      return exit_ok;
    }
    // Most often: `mailscan run` holds the database; the lock says so.
    return error_line("force-sync", fmt::format("{} (stop `mailscan run` first)", db.error().message), exit_failed);
  }
  auto st = db.value()->mailbox_state_of(user);
  if (!st || st->state != "credentials_changed") {
    std::cout << fmt::format("{}: state is {}, logins are not stopped; nothing to do\n", user,
                             st ? st->state : std::string("ok"));
    return exit_ok;
  }
  auto lifted = core::force_sync(*st);
  if (auto r = db.value()->put_mailbox_state(lifted); !r)
    return error_line("force-sync", r.error().message, exit_failed);
  std::cout << fmt::format("{}: credentials_changed lifted; the next pass logs in once more\n", user);
  return exit_ok;
}

} // namespace mscan::apps
