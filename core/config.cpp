// Config loading with toml++ (a full TOML 1.0 parser with source positions, so every error
// can name its line) and nlohmann-json / a small CSV reader for the bulk files of large tenants.
#include "core/config.hpp"
#include "core/event_log.hpp"

#include "core/mail_template.hpp"

#include "core/provider_presets.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace mscan::core {

namespace {

struct load_failure {
  std::string message;
};

[[noreturn]] void fail(std::string msg) { throw load_failure{std::move(msg)}; }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return std::string{s.substr(b, e - b + 1)};
}

// Reads one table, remembering which keys were used so that a misspelt key is an error
// instead of a silently ignored setting.
class table_reader {
 public:
  table_reader(const toml::table& t, std::string file, std::string where)
    : t_(t), file_(std::move(file)), where_(std::move(where)) {}

  [[noreturn]] void error_at(const toml::node* n, std::string_view key, std::string_view what) const {
    auto line = n ? n->source().begin.line : t_.source().begin.line;
    fail(fmt::format("{}:{}: {}: key '{}': {}", file_, line, where_, key, what));
  }

  const toml::node* node(std::string_view key) {
    used_.insert(std::string{key});
    return t_.get(key);
  }

  std::optional<std::string> str(std::string_view key) {
    auto n = node(key);
    if (!n)
      return std::nullopt;
    if (auto v = n->value<std::string>())
      return *v;
    error_at(n, key, "expected a string");
  }
  std::string req_str(std::string_view key) {
    auto v = str(key);
    if (!v || v->empty())
      error_at(nullptr, key, "missing (required)");
    return *v;
  }
  std::optional<bool> boolean(std::string_view key) {
    auto n = node(key);
    if (!n)
      return std::nullopt;
    if (auto v = n->value<bool>())
      return *v;
    error_at(n, key, "expected true or false");
  }
  template <class Int>
  std::optional<Int> integer(std::string_view key, std::int64_t lo, std::int64_t hi) {
    auto n = node(key);
    if (!n)
      return std::nullopt;
    auto v = n->value<std::int64_t>();
    if (!v || !n->is_integer())
      error_at(n, key, "expected an integer");
    if (*v < lo || *v > hi)
      error_at(n, key, fmt::format("{} is out of range [{}, {}]", *v, lo, hi));
    return static_cast<Int>(*v);
  }
  std::vector<std::string> str_list(std::string_view key) {
    auto n = node(key);
    std::vector<std::string> out;
    if (!n)
      return out;
    if (auto s = n->value<std::string>()) {  // a single string is accepted as a one-element list
      out.push_back(*s);
      return out;
    }
    auto arr = n->as_array();
    if (!arr)
      error_at(n, key, "expected a list of strings");
    for (auto& e : *arr) {
      auto s = e.value<std::string>();
      if (!s)
        error_at(&e, key, "expected a list of strings");
      out.push_back(*s);
    }
    return out;
  }
  template <class Enum>
  std::optional<Enum> choice(std::string_view key, std::initializer_list<std::pair<const char*, Enum>> opts) {
    auto n = node(key);
    if (!n)
      return std::nullopt;
    auto s = n->value<std::string>();
    std::string allowed;
    for (auto& [name, val] : opts) {
      if (s && lower(*s) == name)
        return val;
      allowed += allowed.empty() ? name : std::string{" | "} + name;
    }
    error_at(n, key, fmt::format("expected one of {}", allowed));
  }

  void reject_unknown() const {
    for (auto& [k, v] : t_) {
      if (!used_.count(std::string{k.str()}))
        fail(fmt::format("{}:{}: {}: unknown key '{}'", file_, v.source().begin.line, where_, k.str()));
    }
  }

  const std::string& file() const { return file_; }
  const std::string& where() const { return where_; }

 private:
  const toml::table& t_;
  std::string file_;
  std::string where_;
  std::set<std::string> used_;
};

std::filesystem::path resolve(const std::filesystem::path& base, const std::filesystem::path& p) {
  if (p.empty() || p.is_absolute())
    return p;
  return base / p;
}

std::vector<std::string> split_folders(std::string_view spec) {
  std::vector<std::string> out;
  std::string s = trim(spec);
  if (s.empty() || s == "*")
    return out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    auto next = s.find(';', pos);
    auto part = trim(std::string_view{s}.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (!part.empty())
      out.push_back(part);
    if (next == std::string::npos)
      break;
    pos = next + 1;
  }
  return out;
}

std::string read_file_text(const std::filesystem::path& p, std::string_view what) {
  std::ifstream in(p, std::ios::binary);
  if (!in)
    fail(fmt::format("{}: cannot read {}", p.string(), what));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Resolves the mailbox secret from password / password_env / password_file. A missing
// secret is not a load error: the mailbox is "Not Set" and diagnostics say why.
template <class WithSecret>  // mailbox_config, smtp_config
void resolve_secret(WithSecret& m, std::optional<std::string> password,
                    std::optional<std::string> env, std::optional<std::string> file,
                    const std::filesystem::path& base, const std::function<void(std::string)>& err) {
  int sources = (password ? 1 : 0) + (env ? 1 : 0) + (file ? 1 : 0);
  if (sources > 1)
    err("give only one of password, password_env, password_file");
  if (password) {
    m.secret = *password;
  } else if (env) {
    if (const char* v = std::getenv(env->c_str()); v && *v)
      m.secret = v;
    else
      m.secret_problem = fmt::format("environment variable {} is not set", *env);
  } else if (file) {
    auto p = resolve(base, *file);
    std::ifstream in(p, std::ios::binary);
    if (!in) {
      m.secret_problem = fmt::format("password file {} cannot be read", p.string());
    } else {
      std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
        s.pop_back();
      m.secret = std::move(s);
      if (m.secret.empty())
        m.secret_problem = fmt::format("password file {} is empty", p.string());
    }
  } else {
    m.secret_problem = "no password, password_env or password_file configured";
  }
}

void validate_mailbox(const mailbox_config& m, const std::function<void(std::string)>& err) {
  if (m.user.empty())
    err("key 'user': missing (required)");
  if (m.security == security_mode::tls && m.port == 143)
    err("key 'port': 143 is the plain/STARTTLS port but security = \"tls\" (use 993, or security = \"starttls\")");
  if (m.type == mail_protocol::pop3) {
    if (m.security == security_mode::tls && m.port == 110)
      err("key 'port': 110 is the plain/STLS port but security = \"tls\" (use 995, or security = \"starttls\")");
    if (!m.folders.empty() && !(m.folders.size() == 1 && m.folders[0] == "INBOX"))
      err("key 'folders': POP3 has only the INBOX (use \"*\" or \"INBOX\")");
    if (m.scan == scan_mode::unread)
      err("key 'scan': POP3 has no read/unread flags (use scan = \"all\")");
  }
}

const provider_preset* read_provider(table_reader& r) {
  auto name = r.str("provider");
  if (!name)
    return nullptr;
  auto p = find_provider(lower(*name));
  if (!p)
    r.error_at(r.node("provider"), "provider", fmt::format("expected one of {}", known_providers()));
  return p;
}

mailbox_config read_mailbox(table_reader& r, const std::filesystem::path& base) {
  mailbox_config m;
  auto err = [&](std::string what) { r.error_at(nullptr, "", what); };
  m.user = r.req_str("user");
  // A preset supplies the defaults; every key written explicitly still wins.
  const auto* preset = read_provider(r);
  if (preset) {
    m.provider = std::string{preset->name};
    m.throttle_backoff_s = preset->throttle_backoff_s;
    m.max_download_mb_per_day = preset->max_download_mb_per_day;
  }
  m.address = r.str("address").value_or("");
  m.type = r.choice<mail_protocol>("type", {{"imap", mail_protocol::imap}, {"pop3", mail_protocol::pop3}})
             .value_or(mail_protocol::imap);
  m.host = r.str("host").value_or(preset ? std::string{preset->host} : "");
  m.security = r.choice<security_mode>("security", {{"tls", security_mode::tls},
                                                    {"starttls", security_mode::starttls},
                                                    {"none", security_mode::none}})
                 .value_or(preset ? preset->security : security_mode::tls);
  const bool tls = m.security == security_mode::tls;
  m.port = r.integer<std::uint16_t>("port", 1, 65535)
             .value_or(preset                           ? preset->port
                       : m.type == mail_protocol::pop3 ? (tls ? 995 : 110)
                                                       : (tls ? 993 : 143));
  m.verify_certificate = r.boolean("verify_certificate").value_or(true);
  m.compress = r.boolean("compress").value_or(false);
  if (auto ca = r.str("ca_file"))
    m.ca_file = resolve(base, *ca);
  m.oauth_credential = r.str("oauth_credential").value_or("");
  const auto default_auth = preset || !m.oauth_credential.empty() ? auth_kind::xoauth2 : auth_kind::password;
  m.auth = r.choice<auth_kind>("auth", {{"password", auth_kind::password}, {"xoauth2", auth_kind::xoauth2}})
             .value_or(default_auth);
  if (!m.oauth_credential.empty() && m.auth != auth_kind::xoauth2)
    r.error_at(r.node("auth"), "auth", "oauth_credential needs auth = \"xoauth2\"");
  // XOAUTH2 with a credential: the user is the mailbox address (a shared mailbox is opened
  // with the authorised identity's token), unless `username` says otherwise.
  const bool address_login = !m.oauth_credential.empty() && !m.address.empty();
  m.username = r.str("username").value_or(address_login ? m.address : m.user);
  m.throttle_backoff_s = r.integer<std::uint32_t>("throttle_backoff_s", 0, 86400).value_or(m.throttle_backoff_s);
  m.max_download_mb_per_day =
    r.integer<std::uint32_t>("max_download_mb_per_day", 0, 1u << 30).value_or(m.max_download_mb_per_day);
  auto password = r.str("password");
  auto env = r.str("password_env");
  auto file = r.str("password_file");
  auto token = r.str("token");
  auto token_env = r.str("token_env");
  if (m.auth == auth_kind::xoauth2 && (token || token_env)) {
    password = token;
    env = token_env;
  }
  if (!m.oauth_credential.empty()) {
    if (password || env || file)
      err("give either oauth_credential or a static token/password, not both");
  } else {
    resolve_secret(m, password, env, file, base, err);
  }
  m.folders = split_folders(r.str("folders").value_or("*"));
  m.scan = r.choice<scan_mode>("scan", {{"all", scan_mode::all}, {"unread", scan_mode::unread}})
             .value_or(scan_mode::all);
  m.disable_mail_scan = r.boolean("disable_mail_scan").value_or(false);
  m.scan_emails = r.boolean("scan_emails").value_or(true);
  r.reject_unknown();
  validate_mailbox(m, err);
  return m;
}

// Reads a secret's value from `NAME_env` or `NAME_file` (plain or sealed msk1:...).
std::string read_secret_source(table_reader& r, std::string_view name, const std::filesystem::path& base,
                               std::string& problem) {
  auto env = r.str(fmt::format("{}_env", name));
  auto file = r.str(fmt::format("{}_file", name));
  if (env && file)
    r.error_at(nullptr, fmt::format("{}_env", name), fmt::format("give only one of {0}_env, {0}_file", name));
  std::string out;
  if (env) {
    if (const char* v = std::getenv(env->c_str()); v && *v)
      out = v;
    else
      problem = fmt::format("environment variable {} is not set", *env);
  } else if (file) {
    auto p = resolve(base, *file);
    std::ifstream in(p, std::ios::binary);
    if (!in) {
      problem = fmt::format("{} file {} cannot be read", name, p.string());
    } else {
      out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
        out.pop_back();
      if (out.empty())
        problem = fmt::format("{} file {} is empty", name, p.string());
    }
  }
  return out;
}

oauth_credential_config read_oauth_credential(table_reader& r, const std::filesystem::path& base) {
  oauth_credential_config c;
  c.name = r.req_str("name");
  const auto* preset = read_provider(r);
  if (preset)
    c.provider = std::string{preset->name};
  c.tenant = r.str("tenant").value_or("");
  c.grant = r.choice<oauth_grant>("grant", {{"client_credentials", oauth_grant::client_credentials},
                                           {"refresh_token", oauth_grant::refresh_token}})
              .value_or(oauth_grant::client_credentials);
  std::string url = preset ? std::string{preset->token_url} : "";
  if (auto pos = url.find("{tenant}"); pos != std::string::npos) {
    if (c.tenant.empty() && !r.str("token_url"))
      r.error_at(nullptr, "tenant", fmt::format("missing (required by provider = \"{}\")", c.provider));
    url.replace(pos, 8, c.tenant);
  }
  c.token_url = r.str("token_url").value_or(url);
  if (c.token_url.empty())
    r.error_at(nullptr, "token_url", "missing (required without a provider)");
  if (!c.token_url.starts_with("https://") && !c.token_url.starts_with("http://127.") &&
      !c.token_url.starts_with("http://[::1]") && !c.token_url.starts_with("http://localhost"))
    r.error_at(r.node("token_url"), "token_url", "expected an https:// URL (plain http only to loopback)");
  c.client_id = r.req_str("client_id");
  c.client_secret = read_secret_source(r, "client_secret", base, c.secret_problem);
  std::string preset_scope;
  if (preset)
    preset_scope = std::string{c.grant == oauth_grant::client_credentials ? preset->scope_client_credentials
                                                                           : preset->scope_refresh_token};
  if (preset && preset_scope.empty() && !r.str("scope"))
    r.error_at(r.node("grant"), "grant",
               fmt::format("provider \"{}\" has no client_credentials grant for IMAP: use grant = \"refresh_token\"",
                           c.provider));
  c.scope = r.str("scope").value_or(preset_scope);
  if (auto f = r.str("refresh_token_file"))
    c.refresh_token_file = resolve(base, *f);
  if (c.grant == oauth_grant::refresh_token && c.refresh_token_file.empty())
    r.error_at(nullptr, "refresh_token_file", "missing (required with grant = \"refresh_token\")");
  if (auto ca = r.str("ca_file"))
    c.ca_file = resolve(base, *ca);
  c.verify_certificate = r.boolean("verify_certificate").value_or(true);
  c.refresh_margin_s = r.integer<std::uint32_t>("refresh_margin_s", 0, 86400).value_or(c.refresh_margin_s);
  c.timeout_s = r.integer<std::uint32_t>("timeout_s", 1, 600).value_or(c.timeout_s);
  r.reject_unknown();
  return c;
}

condition_config read_condition(const toml::node& n, const std::string& file, const std::string& where);

condition_config read_group(const toml::array& arr, std::string group, const std::string& file,
                            const std::string& where) {
  condition_config g;
  g.group = std::move(group);
  for (auto& e : arr)
    g.children.push_back(read_condition(e, file, where));
  return g;
}

condition_config read_condition(const toml::node& n, const std::string& file, const std::string& where) {
  auto t = n.as_table();
  if (!t)
    fail(fmt::format("{}:{}: {}: a condition must be a table {{ field = ..., op = ..., value = ... }}",
                     file, n.source().begin.line, where));
  for (const char* g : {"any", "all"}) {
    if (auto arr = t->get_as<toml::array>(g)) {
      if (t->size() != 1)
        fail(fmt::format("{}:{}: {}: a group {{ {} = [...] }} takes no other keys", file,
                         n.source().begin.line, where, g));
      return read_group(*arr, g, file, where);
    }
  }
  table_reader r(*t, file, where);
  condition_config c;
  static const std::set<std::string> fields{"from", "to", "cc", "bcc", "subject", "body",
                                            "date", "has_attachment", "folder"};
  static const std::set<std::string> ops{"contains", "not_contains", "equals", "not_equals",
                                         "starts_with", "ends_with", "regex", "before", "after"};
  c.field = lower(r.req_str("field"));
  if (!fields.count(c.field))
    r.error_at(r.node("field"), "field", fmt::format("unknown field '{}'", c.field));
  c.op = lower(r.req_str("op"));
  if (!ops.count(c.op))
    r.error_at(r.node("op"), "op", fmt::format("unknown operator '{}'", c.op));
  auto vn = r.node("value");
  if (!vn)
    r.error_at(nullptr, "value", "missing (required)");
  if (auto s = vn->value<std::string>())
    c.value = *s;
  else if (auto b = vn->value<bool>())
    c.value = *b ? "true" : "false";
  else
    r.error_at(vn, "value", "expected a string or boolean");
  r.reject_unknown();
  return c;
}

rule_config read_rule(table_reader& r, const toml::table& t) {
  rule_config rule;
  rule.name = r.req_str("name");
  rule.active = r.boolean("active").value_or(true);
  rule.users = r.str_list("users");
  rule.folders = r.str_list("folders");
  auto match = r.choice<std::string>("match", {{"all", "all"}, {"any", "any"}}).value_or("all");
  std::string where = fmt::format("[[rule]] '{}'", rule.name);
  rule.root.group = match;
  if (auto n = r.node("conditions")) {
    auto arr = n->as_array();
    if (!arr)
      r.error_at(n, "conditions", "expected a list of conditions");
    rule.root = read_group(*arr, match, r.file(), where);
  }
  static const std::set<std::string> kinds{"create_contact", "create_or_update_ticket", "move",
                                           "delete", "mark_read"};
  if (auto n = r.node("actions")) {
    auto arr = n->as_array();
    if (!arr)
      r.error_at(n, "actions", "expected a list of actions");
    for (auto& e : *arr) {
      auto at = e.as_table();
      if (!at)
        r.error_at(&e, "actions", "each action must be a table { type = ... }");
      table_reader ar(*at, r.file(), where + " action");
      action_config a;
      a.type = lower(ar.req_str("type"));
      if (!kinds.count(a.type))
        ar.error_at(ar.node("type"), "type", fmt::format("unknown action '{}'", a.type));
      a.folder = ar.str("folder").value_or("");
      a.status = ar.str("status").value_or("Open");
      a.assignee = ar.str("assignee").value_or("");
      a.priority = ar.str("priority").value_or("");
      a.ticket_regex = ar.str("ticket_regex").value_or("");
      a.ticket_prefix = ar.str("ticket_prefix").value_or("TT");
      if (a.ticket_prefix.empty() || a.ticket_prefix.size() > 16 ||
          !std::all_of(a.ticket_prefix.begin(), a.ticket_prefix.end(),
                       [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; }))
        ar.error_at(ar.node("ticket_prefix"), "ticket_prefix", "expected 1-16 letters, digits, '-' or '_'");
      if (a.type == "move" && a.folder.empty())
        ar.error_at(nullptr, "folder", "missing (required for a move action)");
      ar.reject_unknown();
      rule.actions.push_back(std::move(a));
    }
  }
  r.reject_unknown();
  (void)t;
  return rule;
}

// --- bulk files (mailboxes_file, directory_file) ------------------------------------------

std::vector<std::vector<std::string>> parse_csv(std::string_view text, const std::string& file) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  std::size_t line = 1;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n')
          ++line;
        field += c;
      }
      continue;
    }
    if (c == '"' && field.empty()) {
      quoted = any = true;
    } else if (c == ',') {
      row.push_back(trim(field));
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')
        ++i;
      if (any || !field.empty()) {
        row.push_back(trim(field));
        rows.push_back(std::move(row));
      }
      row.clear();
      field.clear();
      any = false;
      ++line;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted)
    fail(fmt::format("{}:{}: unterminated quoted field", file, line));
  if (any || !field.empty()) {
    row.push_back(trim(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

// Turns CSV rows or JSON objects into TOML tables so that one reader validates all sources.
toml::table csv_row_table(const std::vector<std::string>& header, const std::vector<std::string>& row,
                          const std::string& file, std::size_t line) {
  if (row.size() != header.size())
    fail(fmt::format("{}:{}: expected {} fields, found {}", file, line, header.size(), row.size()));
  toml::table t;
  for (std::size_t i = 0; i < header.size(); ++i) {
    const auto& k = header[i];
    const auto& v = row[i];
    if (v.empty())
      continue;
    if (k == "port") {
      try {
        std::size_t used = 0;
        auto n = std::stoll(v, &used);
        if (used != v.size())
          throw std::invalid_argument("x");
        t.insert(k, n);
      } catch (const std::exception&) {
        fail(fmt::format("{}:{}: key 'port': expected an integer, found '{}'", file, line, v));
      }
    } else if (v == "true" || v == "false") {
      t.insert(k, v == "true");
    } else if (k == "domains") {
      toml::array arr;
      std::stringstream ss(v);
      std::string d;
      while (std::getline(ss, d, ';'))
        if (auto td = trim(d); !td.empty())
          arr.push_back(td);
      t.insert(k, std::move(arr));
    } else {
      t.insert(k, v);
    }
  }
  return t;
}

toml::table json_object_table(const nlohmann::json& j, const std::string& file, std::string_view what) {
  if (!j.is_object())
    fail(fmt::format("{}: each entry of '{}' must be an object", file, what));
  toml::table t;
  for (auto& [k, v] : j.items()) {
    if (v.is_string())
      t.insert(k, v.get<std::string>());
    else if (v.is_boolean())
      t.insert(k, v.get<bool>());
    else if (v.is_number_integer())
      t.insert(k, v.get<std::int64_t>());
    else if (v.is_array()) {
      toml::array arr;
      for (auto& e : v) {
        if (!e.is_string())
          fail(fmt::format("{}: '{}' key '{}': expected a list of strings", file, what, k));
        arr.push_back(e.get<std::string>());
      }
      t.insert(k, std::move(arr));
    } else if (!v.is_null()) {
      fail(fmt::format("{}: '{}' key '{}': unsupported value type", file, what, k));
    }
  }
  return t;
}

// Reads a bulk file into named lists of tables: CSV = one list (`csv_kind`), JSON = an array
// (one list) or an object of arrays keyed by kind.
std::map<std::string, std::vector<toml::table>> read_bulk(const std::filesystem::path& p,
                                                          const std::string& csv_kind) {
  std::map<std::string, std::vector<toml::table>> out;
  auto text = read_file_text(p, "bulk file");
  auto file = p.string();
  auto ext = lower(p.extension().string());
  if (ext == ".json") {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      fail(fmt::format("{}: invalid JSON at byte {}", file, e.byte));
    }
    if (j.is_array()) {
      for (auto& e : j)
        out[csv_kind].push_back(json_object_table(e, file, csv_kind));
    } else if (j.is_object()) {
      for (auto& [k, v] : j.items()) {
        if (!v.is_array())
          fail(fmt::format("{}: '{}' must be a list", file, k));
        for (auto& e : v)
          out[k].push_back(json_object_table(e, file, k));
      }
    } else {
      fail(fmt::format("{}: expected a JSON list or object", file));
    }
    return out;
  }
  auto rows = parse_csv(text, file);
  if (rows.empty())
    return out;
  auto header = rows.front();
  for (auto& h : header)
    h = lower(h);
  for (std::size_t i = 1; i < rows.size(); ++i)
    out[csv_kind].push_back(csv_row_table(header, rows[i], file, i + 1));
  return out;
}

account_config read_account(table_reader& r) {
  account_config a;
  a.name = r.req_str("name");
  for (auto& d : r.str_list("domains"))
    a.domains.push_back(lower(trim(d)));
  a.parent_domains = r.boolean("parent_domains").value_or(false);
  r.reject_unknown();
  return a;
}

contact_config read_contact(table_reader& r) {
  contact_config c;
  c.email = r.req_str("email");
  if (c.email.find('@') == std::string::npos)
    r.error_at(r.node("email"), "email", fmt::format("'{}' is not an e-mail address", c.email));
  c.name = r.str("name").value_or("");
  c.account = r.str("account").value_or("");
  r.reject_unknown();
  return c;
}

item_config read_item(table_reader& r) {
  item_config i;
  static const std::set<std::string> kinds{"activity", "opportunity", "quote", "project", "ticket"};
  i.kind = lower(r.str("kind").value_or("activity"));
  if (!kinds.count(i.kind))
    r.error_at(r.node("kind"), "kind", "expected one of activity | opportunity | quote | project | ticket");
  i.reference = r.req_str("reference");
  r.reject_unknown();
  return i;
}

template <class F>
void for_each_table(const toml::table& root, std::string_view key, const std::string& file, F&& f) {
  auto n = root.get(key);
  if (!n)
    return;
  auto arr = n->as_array();
  if (!arr)
    fail(fmt::format("{}:{}: '{}' must be an array of tables ([[{}]])", file, n->source().begin.line,
                     key, key));
  std::size_t idx = 0;
  for (auto& e : *arr) {
    ++idx;
    auto t = e.as_table();
    if (!t)
      fail(fmt::format("{}:{}: [[{}]] #{} must be a table", file, e.source().begin.line, key, idx));
    f(*t, idx);
  }
}

// [smtp]. The templates are checked here (unknown tags, $ticket_no$ in the subject); the
// sender against the ticket mailboxes once every mailbox is known (check_smtp_sender).
smtp_config read_smtp(table_reader& r, const std::filesystem::path& base) {
  smtp_config s;
  s.host = r.req_str("host");
  s.security = r.choice<security_mode>("security", {{"tls", security_mode::tls},
                                                    {"starttls", security_mode::starttls},
                                                    {"none", security_mode::none}})
                 .value_or(security_mode::starttls);
  s.port = r.integer<std::uint16_t>("port", 1, 65535).value_or(s.security == security_mode::tls ? 465 : 587);
  s.verify_certificate = r.boolean("verify_certificate").value_or(true);
  if (auto ca = r.str("ca_file"))
    s.ca_file = resolve(base, *ca);
  s.auth = r.choice<auth_kind>("auth", {{"password", auth_kind::password}, {"xoauth2", auth_kind::xoauth2}})
             .value_or(auth_kind::password);
  s.username = r.str("username").value_or("");
  auto password = r.str("password");
  auto env = r.str("password_env");
  auto file = r.str("password_file");
  if (auto t = r.str("token_env"); t && s.auth == auth_kind::xoauth2)
    env = t;
  auto err = [&](std::string what) { r.error_at(nullptr, "", what); };
  if (!s.username.empty())
    resolve_secret(s, password, env, file, base, err);
  s.from_address = lower(r.req_str("from_address"));
  if (s.from_address.find('@') == std::string::npos || s.from_address.find_first_of(" <>\r\n") != std::string::npos)
    r.error_at(r.node("from_address"), "from_address", "expected a bare address such as support@corp.example");
  s.from_name = r.str("from_name").value_or("");
  s.helo_name = r.str("helo_name").value_or(s.helo_name);
  s.max_attempts = r.integer<std::uint32_t>("max_attempts", 1, 1000).value_or(s.max_attempts);
  s.retry_backoff_s = r.integer<std::uint32_t>("retry_backoff_s", 0, 86400).value_or(s.retry_backoff_s);
  s.timeout_s = r.integer<std::uint32_t>("timeout_s", 1, 3600).value_or(s.timeout_s);
  auto check = [&](std::string_view key, const std::string& tpl) {
    auto known = [](std::string_view tag) -> std::optional<std::string> {
      const auto& tags = smtp_template_tags();
      if (std::find(tags.begin(), tags.end(), tag) == tags.end())
        return std::nullopt;
      return std::string{};
    };
    if (auto x = expand_template(tpl, known); !x) {
      std::string allowed;
      for (auto& t : smtp_template_tags())
        allowed += (allowed.empty() ? "$" : ", $") + t + "$";
      r.error_at(r.node(key), key, fmt::format("{} (known: {})", x.error(), allowed));
    }
  };
  if (auto t = r.str("subject_template"))
    s.subject_template = *t;
  if (auto t = r.str("body_template"))
    s.body_template = *t;
  if (auto f = r.str("body_template_file")) {
    if (r.node("body_template"))
      r.error_at(r.node("body_template_file"), "body_template_file", "give body_template or body_template_file, not both");
    s.body_template = read_file_text(resolve(base, *f), "body_template_file");
  }
  check("subject_template", s.subject_template);
  check("body_template", s.body_template);
  if (!template_uses(s.subject_template, "ticket_no"))
    r.error_at(r.node("subject_template"), "subject_template",
               fmt::format("'{}' has no $ticket_no$: the ticket number must be in the subject, or the "
                           "customer's reply cannot be matched to the ticket",
                           s.subject_template));
  if (s.subject_template.find_first_of("\r\n") != std::string::npos)
    r.error_at(r.node("subject_template"), "subject_template", "must be one line");
  r.reject_unknown();
  return s;
}

// The customer's reply goes to the sender address: it must be a mailbox that a
// create_or_update_ticket rule scans, or the reply never becomes a comment.
void check_smtp_sender(const config& cfg) {
  if (!cfg.smtp.enabled())
    return;
  std::vector<const mailbox_config*> ticket_boxes;
  for (auto& m : cfg.mailboxes) {
    bool scanned = false;
    for (auto& rule : cfg.rules) {
      if (!rule.active || (!rule.users.empty() && std::find(rule.users.begin(), rule.users.end(), m.user) == rule.users.end()))
        continue;
      for (auto& a : rule.actions)
        scanned = scanned || a.type == "create_or_update_ticket";
    }
    if (scanned)
      ticket_boxes.push_back(&m);
  }
  if (ticket_boxes.empty())
    return;  // no tickets here (notification mail only): no reply to route
  std::string list;
  for (auto* m : ticket_boxes) {
    if (lower(m->address) == cfg.smtp.from_address)
      return;
    list += fmt::format("{}{} (mailbox '{}')", list.empty() ? "" : ", ", m->address.empty() ? "(no address)" : m->address, m->user);
  }
  fail(fmt::format("{}: [smtp] from_address '{}' is not the address tickets are received on ({}): the "
                   "customer's reply would not reach the ticket scanner",
                   cfg.file.string(), cfg.smtp.from_address, list));
}

config parse_impl(std::string_view text, const std::filesystem::path& origin) {
  config cfg;
  cfg.file = origin;
  auto file = origin.string();
  auto base = origin.parent_path();
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    fail(fmt::format("{}:{}: {}", file, e.source().begin.line, e.description()));
  }
  static const std::set<std::string> top{"engine",  "service", "smtp",         "mailbox", "account",
                                         "contact", "item",    "item_pattern", "rule",    "oauth_credential",
                                         "cluster"};
  for (auto& [k, v] : root)
    if (!top.count(std::string{k.str()}))
      fail(fmt::format("{}:{}: unknown top-level key '{}'", file, v.source().begin.line, k.str()));

  if (auto et = root.get_as<toml::table>("engine")) {
    table_reader r(*et, file, "[engine]");
    auto& e = cfg.engine;
    e.data_dir = resolve(base, r.str("data_dir").value_or("data"));
    e.log_dir = resolve(base, r.str("log_dir").value_or("logs"));
    e.info_logging = r.boolean("info_logging").value_or(e.info_logging);
    e.warning_logging = r.boolean("warning_logging").value_or(e.warning_logging);
    e.log_timezone = r.str("log_timezone").value_or(e.log_timezone);
    if (auto bad = log_timezone_problem(e.log_timezone))
      r.error_at(r.node("log_timezone"), "log_timezone", *bad);
    e.log_retention_days = r.integer<std::uint32_t>("log_retention_days", 0, 36500).value_or(e.log_retention_days);
    e.poll_interval_s = r.integer<std::uint32_t>("poll_interval_s", 1, 86400).value_or(e.poll_interval_s);
    e.max_connections = r.integer<std::uint32_t>("max_connections", 1, 100000).value_or(e.max_connections);
    e.max_connections_per_host =
      r.integer<std::uint32_t>("max_connections_per_host", 1, 100000).value_or(e.max_connections_per_host);
    e.days_back = r.integer<std::uint32_t>("days_back", 0, 36500).value_or(e.days_back);
    e.notify_after_failures =
      r.integer<std::uint32_t>("notify_after_failures", 1, 1000000).value_or(e.notify_after_failures);
    e.batch_size = r.integer<std::uint32_t>("batch_size", 1, 10000).value_or(e.batch_size);
    e.max_inflight_batches = r.integer<std::uint32_t>("max_inflight_batches", 1, 64).value_or(e.max_inflight_batches);
    e.max_inflight_mb = r.integer<std::uint32_t>("max_inflight_mb", 0, 1048576).value_or(e.max_inflight_mb);
    e.slice_batches = r.integer<std::uint32_t>("slice_batches", 1, 1000000).value_or(e.slice_batches);
    e.slice_seconds = r.integer<std::uint32_t>("slice_seconds", 1, 86400).value_or(e.slice_seconds);
    e.connect_timeout_s = r.integer<std::uint32_t>("connect_timeout_s", 1, 3600).value_or(e.connect_timeout_s);
    e.command_timeout_s = r.integer<std::uint32_t>("command_timeout_s", 1, 3600).value_or(e.command_timeout_s);
    e.slow_response_ms = r.integer<std::uint32_t>("slow_response_ms", 0, 3600000).value_or(e.slow_response_ms);
    e.matchers = r.integer<std::uint32_t>("matchers", 0, 256).value_or(0);
    if (auto n = r.node("max_logins_per_second_per_host")) {
      auto v = n->value<double>();
      if (!v || *v < 0)
        r.error_at(n, "max_logins_per_second_per_host", "expected a number >= 0");
      e.max_logins_per_second_per_host = *v;
    }
    e.max_backoff_s = r.integer<std::uint32_t>("max_backoff_s", 1, 7 * 86400).value_or(e.max_backoff_s);
    e.keep_sessions = r.integer<std::uint32_t>("keep_sessions", 0, 100000).value_or(e.keep_sessions);
    e.idle = r.boolean("idle").value_or(e.idle);
    e.min_free_disk_mb = r.integer<std::uint64_t>("min_free_disk_mb", 0, 1 << 20).value_or(e.min_free_disk_mb);
    e.write_delay_ms = r.integer<std::uint32_t>("write_delay_ms", 0, 60000).value_or(0);
    e.commit_interval_ms = r.integer<std::uint32_t>("commit_interval_ms", 0, 1000).value_or(e.commit_interval_ms);
    e.io_threads = r.integer<std::uint32_t>("io_threads", 1, 64).value_or(e.io_threads);
    e.strip_subaddress = r.boolean("strip_subaddress").value_or(false);
    for (auto& d : r.str_list("internal_domains"))
      e.internal_domains.push_back(lower(d));
    for (auto& d : r.str_list("freemail_domains"))
      e.freemail_domains.push_back(lower(trim(d)));
    e.reply_marker = r.str("reply_marker").value_or("");
    if (auto ft = r.str("fetch_text")) {
      if (*ft == "always")
        e.fetch_text = fetch_text_mode::always;
      else if (*ft != "auto")
        r.error_at(r.node("fetch_text"), "fetch_text", "expected \"auto\" or \"always\"");
    }
    if (auto f = r.str("mailboxes_file"))
      e.mailboxes_file = resolve(base, *f);
    if (auto f = r.str("directory_file"))
      e.directory_file = resolve(base, *f);
    if (auto f = r.str("secrets_key_file"))
      e.secrets_key_file = resolve(base, *f);
    e.secrets_key_env = r.str("secrets_key_env").value_or("");
    r.reject_unknown();
  } else if (root.get("engine")) {
    fail(fmt::format("{}: [engine] must be a table", file));
  }

  if (auto st = root.get_as<toml::table>("service")) {
    table_reader r(*st, file, "[service]");
    auto& s = cfg.service;
    s.listen = r.str("listen").value_or("");
    s.allow_remote = r.boolean("allow_remote").value_or(false);
    if (!s.listen.empty()) {
      const auto colon = s.listen.rfind(':');
      const bool ok = colon != std::string::npos && colon > 0 && colon + 1 < s.listen.size() &&
                      s.listen.find_first_not_of("0123456789", colon + 1) == std::string::npos &&
                      s.listen.size() - colon - 1 <= 5 && std::stoul(s.listen.substr(colon + 1)) <= 65535;
      if (!ok)
        r.error_at(r.node("listen"), "listen", "expected HOST:PORT, e.g. \"127.0.0.1:8080\"");
      s.token_env = r.req_str("token_env");
      if (const char* v = std::getenv(s.token_env.c_str()))
        s.token = v;
      // An unset variable is refused when the service starts, not here: `status`, `query` and
      // `diagnose` in an operator's shell must not need the service's token.
    } else if (auto t = r.str("token_env")) {
      s.token_env = *t;
    }
    s.webhook_url = r.str("webhook_url").value_or("");
    if (!s.webhook_url.empty() && !s.webhook_url.starts_with("http://") && !s.webhook_url.starts_with("https://"))
      r.error_at(r.node("webhook_url"), "webhook_url", "expected an http:// or https:// URL");
    if (auto t = r.str("webhook_token_env")) {
      s.webhook_token_env = *t;
      if (const char* v = std::getenv(t->c_str()))
        s.webhook_token = v;
    }
    if (auto f = r.str("webhook_ca_file"))
      s.webhook_ca_file = resolve(base, *f);
    s.notify_email = lower(r.str("notify_email").value_or(""));
    if (!s.notify_email.empty() && s.notify_email.find('@') == std::string::npos)
      r.error_at(r.node("notify_email"), "notify_email", "expected an e-mail address");
    r.reject_unknown();
  } else if (root.get("service")) {
    fail(fmt::format("{}: [service] must be a table", file));
  }

  if (auto st = root.get_as<toml::table>("smtp")) {
    table_reader r(*st, file, "[smtp]");
    cfg.smtp = read_smtp(r, base);
  } else if (root.get("smtp")) {
    fail(fmt::format("{}: [smtp] must be a table", file));
  }

  for_each_table(root, "oauth_credential", file, [&](const toml::table& t, std::size_t idx) {
    auto name = t.get_as<std::string>("name");
    table_reader r(t, file, fmt::format("[[oauth_credential]] #{}{}", idx, name ? " (" + name->get() + ")" : ""));
    cfg.oauth_credentials.push_back(read_oauth_credential(r, base));
  });
  if (auto ct = root.get_as<toml::table>("cluster")) {
    table_reader r(*ct, file, "[cluster]");
    auto& c = cfg.cluster;
    c.secret_env = r.str("secret_env").value_or("");
    c.heartbeat_ms = r.integer<std::uint32_t>("heartbeat_ms", 50, 60000).value_or(c.heartbeat_ms);
    c.node_timeout_ms = r.integer<std::uint32_t>("node_timeout_ms", 200, 600000).value_or(c.node_timeout_ms);
    c.min_nodes = r.integer<std::uint32_t>("min_nodes", 1, 10000).value_or(c.min_nodes);
    if (c.node_timeout_ms <= c.heartbeat_ms)
      r.error_at(r.node("node_timeout_ms"), "node_timeout_ms", "must be longer than heartbeat_ms");
    r.reject_unknown();
  } else if (root.get("cluster")) {
    fail(fmt::format("{}: [cluster] must be a table", file));
  }

  for_each_table(root, "mailbox", file, [&](const toml::table& t, std::size_t idx) {
    auto user = t.get_as<std::string>("user");
    table_reader r(t, file, fmt::format("[[mailbox]] #{}{}", idx, user ? " (" + user->get() + ")" : ""));
    cfg.mailboxes.push_back(read_mailbox(r, base));
  });
  for_each_table(root, "account", file, [&](const toml::table& t, std::size_t idx) {
    table_reader r(t, file, fmt::format("[[account]] #{}", idx));
    cfg.accounts.push_back(read_account(r));
  });
  for_each_table(root, "contact", file, [&](const toml::table& t, std::size_t idx) {
    table_reader r(t, file, fmt::format("[[contact]] #{}", idx));
    cfg.contacts.push_back(read_contact(r));
  });
  for_each_table(root, "item", file, [&](const toml::table& t, std::size_t idx) {
    table_reader r(t, file, fmt::format("[[item]] #{}", idx));
    cfg.items.push_back(read_item(r));
  });
  for_each_table(root, "item_pattern", file, [&](const toml::table& t, std::size_t idx) {
    table_reader r(t, file, fmt::format("[[item_pattern]] #{}", idx));
    item_pattern_config p;
    p.kind = r.req_str("kind");
    p.regex = r.req_str("regex");
    r.reject_unknown();
    cfg.item_patterns.push_back(std::move(p));
  });
  for_each_table(root, "rule", file, [&](const toml::table& t, std::size_t idx) {
    table_reader r(t, file, fmt::format("[[rule]] #{}", idx));
    cfg.rules.push_back(read_rule(r, t));
  });

  if (!cfg.engine.mailboxes_file.empty()) {
    auto p = cfg.engine.mailboxes_file;
    auto bulk = read_bulk(p, "mailbox");
    std::size_t idx = 0;
    for (auto& [kind, tables] : bulk) {
      if (kind != "mailbox" && kind != "mailboxes")
        fail(fmt::format("{}: unexpected list '{}' (expected mailboxes)", p.string(), kind));
      for (auto& t : tables) {
        ++idx;
        table_reader r(t, p.string(), fmt::format("mailbox row {}", idx));
        cfg.mailboxes.push_back(read_mailbox(r, base));
      }
    }
  }
  if (!cfg.engine.directory_file.empty()) {
    auto p = cfg.engine.directory_file;
    // A CSV holds one list: named by the file ("accounts.csv", "items.csv"; anything else is
    // contacts) or row by row in a `kind` column ("account", "contact", or an item kind such
    // as "ticket" — that row is then an item of that kind).
    auto stem = lower(p.stem().string());
    const bool csv = lower(p.extension().string()) != ".json";
    auto bulk = read_bulk(p, stem == "accounts" || stem == "account" ? "accounts"
                             : stem == "items" || stem == "item"     ? "items"
                                                                      : "contacts");
    if (csv && bulk.size() == 1) {
      auto [list, rows] = std::move(*bulk.begin());
      bulk.clear();
      for (auto& t : rows) {
        auto k = t.get_as<std::string>("kind");
        if (!k || list == "items") {
          bulk[list].push_back(std::move(t));
          continue;
        }
        auto v = lower(k->get());
        if (v == "account" || v == "accounts" || v == "contact" || v == "contacts") {
          t.erase("kind");
          bulk[v.back() == 's' ? v : v + "s"].push_back(std::move(t));
        } else {
          bulk["items"].push_back(std::move(t));
        }
      }
    }
    for (auto& [kind, tables] : bulk) {
      std::size_t idx = 0;
      for (auto& t : tables) {
        ++idx;
        table_reader r(t, p.string(), fmt::format("{} #{}", kind, idx));
        if (kind == "accounts" || kind == "account")
          cfg.accounts.push_back(read_account(r));
        else if (kind == "contacts" || kind == "contact")
          cfg.contacts.push_back(read_contact(r));
        else if (kind == "items" || kind == "item")
          cfg.items.push_back(read_item(r));
        else
          fail(fmt::format("{}: unexpected list '{}' (expected accounts, contacts or items)", p.string(), kind));
      }
    }
  }

  std::set<std::string> users;
  for (auto& m : cfg.mailboxes)
    if (!users.insert(m.user).second)
      fail(fmt::format("{}: mailbox user '{}' appears twice (users must be unique)", file, m.user));
  std::set<std::string> credential_names;
  for (auto& c : cfg.oauth_credentials)
    if (!credential_names.insert(c.name).second)
      fail(fmt::format("{}: oauth_credential '{}' appears twice (names must be unique)", file, c.name));
  for (auto& m : cfg.mailboxes)
    if (!m.oauth_credential.empty() && !credential_names.count(m.oauth_credential))
      fail(fmt::format("{}: mailbox '{}' names unknown oauth_credential '{}'", file, m.user, m.oauth_credential));
  std::set<std::string> account_names;
  for (auto& a : cfg.accounts)
    account_names.insert(a.name);
  for (auto& c : cfg.contacts)
    if (!c.account.empty() && !account_names.count(c.account))
      fail(fmt::format("{}: contact '{}' names unknown account '{}'", file, c.email, c.account));
  check_smtp_sender(cfg);
  if (!cfg.service.notify_email.empty() && !cfg.smtp.enabled())
    fail(fmt::format("{}: [service] notify_email needs an [smtp] table to send through", file));
  return cfg;
}

} // namespace

const mailbox_config* config::find_mailbox(std::string_view user) const {
  for (auto& m : mailboxes)
    if (m.user == user)
      return &m;
  return nullptr;
}

const oauth_credential_config* config::find_oauth_credential(std::string_view name) const {
  for (auto& c : oauth_credentials)
    if (c.name == name)
      return &c;
  return nullptr;
}

expected<config, config_error> parse_config(std::string_view text, const std::filesystem::path& origin) {
  try {
    return parse_impl(text, origin);
  } catch (const load_failure& f) {
    return unexpected{config_error{f.message}};
  } catch (const std::exception& e) {
    return unexpected{config_error{fmt::format("{}: {}", origin.string(), e.what())}};
  }
}

expected<config, config_error> load_config(const std::filesystem::path& file) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(file, ec);
  std::ifstream in(file, std::ios::binary);
  if (!in)
    return unexpected{config_error{fmt::format("{}: cannot read config file", file.string())}};
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), ec ? file : abs);
}

std::string_view to_string(mail_protocol p) { return p == mail_protocol::pop3 ? "pop3" : "imap"; }

std::string_view to_string(security_mode m) {
  switch (m) {
    case security_mode::tls: return "tls";
    case security_mode::starttls: return "starttls";
    case security_mode::none: return "none";
  }
  return "?";
}

const std::vector<std::string>& smtp_template_tags() {
  static const std::vector<std::string> tags{"ticket_no", "comment", "comments", "reply_above", "subject",
                                             "status", "assignee", "priority", "contact", "from_name"};
  return tags;
}

std::string_view to_string(scan_mode m) { return m == scan_mode::unread ? "unread" : "all"; }

} // namespace mscan::core
