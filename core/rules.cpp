#include "core/rules.hpp"

#include "core/references.hpp"

#include <fmt/format.h>
#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <unordered_map>

namespace mscan::core {
namespace {

// Fields whose conditions go through a per-field RE2::Set. `date` is one too: its string
// operators see the ISO 8601 rendering; before/after and has_attachment are direct checks.
enum class field_id : std::uint8_t { from, to, cc, bcc, subject, body, date, folder, has_attachment };
constexpr std::size_t set_field_count = 8;

std::optional<field_id> field_from(std::string_view f) {
  static constexpr std::array<std::pair<std::string_view, field_id>, 9> names{{
      {"from", field_id::from}, {"to", field_id::to}, {"cc", field_id::cc}, {"bcc", field_id::bcc},
      {"subject", field_id::subject}, {"body", field_id::body}, {"date", field_id::date},
      {"folder", field_id::folder}, {"has_attachment", field_id::has_attachment}}};
  for (auto& [n, id] : names)
    if (n == f)
      return id;
  return std::nullopt;
}

bool is_address(field_id f) {
  return f == field_id::from || f == field_id::to || f == field_id::cc || f == field_id::bcc;
}

enum class node_kind : std::uint8_t { all, any, set_leaf, before, after, attachment };

struct node {
  node_kind kind = node_kind::all;
  bool negate = false;
  field_id field = field_id::subject;
  bool want = false;             // attachment
  std::uint32_t pid = 0;         // set_leaf: global pattern id
  std::int64_t when = 0;         // before/after: unix seconds
  std::uint32_t first_child = 0; // groups: range in compiled_rules::impl::children
  std::uint32_t child_count = 0;
  std::uint32_t cond = 0;        // index into conds (explain text)
};

struct cond_text {
  std::string path, field, op, value;
};

struct pattern {
  field_id field;
  std::uint32_t local = 0;    // index inside its field's set
  std::unique_ptr<RE2> alone; // the same pattern alone: fallback and explain excerpts
};

struct compiled_rule {
  std::size_t index = 0;
  std::string name;
  std::vector<std::string> users, folders;  // sorted; empty = all
  std::vector<action_config> actions;
  std::vector<ticket_matcher> tickets;  // parallel to actions; empty matcher without ticket_regex
  std::uint32_t root = 0;
  bool guarded = false;
};

RE2::Options quiet_options() {
  RE2::Options o;
  o.set_log_errors(false);
  return o;
}

// --- dates ----------------------------------------------------------------------------------

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

std::string iso_date(std::int64_t t) {
  std::int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
  std::int64_t secs = t - days * 86400;
  std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  auto secs_u = static_cast<unsigned>(secs);  // 0..86399 by construction
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02u:%02u:%02uZ", static_cast<long long>(y), m, d,
                secs_u / 3600 % 24, secs_u / 60 % 60, secs_u % 60);
  return buf;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, unsigned& out) {
  if (pos + n > s.size())
    return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    out = out * 10 + static_cast<unsigned>(s[i] - '0');
  }
  return true;
}

// "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS](Z|+HH:MM|-HH:MM)" (T or a space), else RFC 5322.
std::optional<std::int64_t> parse_rule_date(std::string_view v) {
  unsigned y, mo, d;
  if (digits(v, 0, 4, y) && v.size() >= 10 && v[4] == '-' && digits(v, 5, 2, mo) && v[7] == '-' &&
      digits(v, 8, 2, d)) {
    static constexpr unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
      return std::nullopt;
    std::int64_t t = days_from_civil(y, mo, d) * 86400;
    if (v.size() == 10)
      return t;
    unsigned hh, mm, ss = 0;
    if ((v[10] != 'T' && v[10] != 't' && v[10] != ' ') || !digits(v, 11, 2, hh) || v.size() < 16 ||
        v[13] != ':' || !digits(v, 14, 2, mm))
      return std::nullopt;
    std::size_t p = 16;
    if (p < v.size() && v[p] == ':') {
      if (!digits(v, p + 1, 2, ss))
        return std::nullopt;
      p += 3;
    }
    if (hh > 23 || mm > 59 || ss > 60)
      return std::nullopt;
    t += hh * 3600 + mm * 60 + ss;
    std::string_view zone = v.substr(p);
    if (zone == "Z" || zone == "z")
      return t;
    unsigned oh, om;
    if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && digits(zone, 1, 2, oh) &&
        zone[3] == ':' && digits(zone, 4, 2, om) && oh < 24 && om < 60) {
      std::int64_t off = oh * 3600 + om * 60;
      return zone[0] == '+' ? t - off : t + off;
    }
    return std::nullopt;
  }
  return mime::parse_date(v);
}

// --- per-message matching -------------------------------------------------------------------

std::string_view trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && ws(s.back()))
    s.remove_suffix(1);
  return s;
}

// IMAP's INBOX is case-insensitive (RFC 3501 5.1); every other name is compared as written.
std::string_view canonical_folder(std::string_view f) {
  if (f.size() == 5) {
    std::string low(f);
    for (auto& c : low)
      c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    if (low == "inbox")
      return "INBOX";
  }
  return f;
}

std::string address_form(const mime::address& a) {
  if (a.display_name.empty())
    return a.email;
  std::string s;
  s.reserve(a.display_name.size() + a.email.size() + 3);
  s += a.display_name;
  s += " <";
  s += a.email;
  s += '>';
  return s;
}

std::string body_excerpt(std::string_view body, std::size_t b, std::size_t e) {
  constexpr std::size_t around = 50;
  std::size_t from = b > around ? b - around : 0;
  std::size_t to = std::min(body.size(), std::max(e, b + 20) + around);
  to = std::min(to, from + 200);
  auto cont = [&](std::size_t i) { return i < body.size() && (static_cast<unsigned char>(body[i]) & 0xC0) == 0x80; };
  while (from > 0 && cont(from))
    --from;
  while (to < body.size() && cont(to))
    ++to;
  std::string s(body.substr(from, to - from));
  for (auto& c : s)
    if (c == '\r' || c == '\n' || c == '\t')
      c = ' ';
  return s;
}

} // namespace

struct compiled_rules::impl {
  std::vector<compiled_rule> rules;
  std::vector<node> nodes;
  std::vector<std::uint32_t> children;
  std::vector<cond_text> conds;
  std::vector<pattern> patterns;                                   // by global pid
  std::array<std::unique_ptr<RE2::Set>, set_field_count> sets;     // null when the field has none
  std::array<std::vector<std::uint32_t>, set_field_count> set_pids; // local -> global pid
  std::vector<std::vector<std::uint32_t>> guard_rules;              // pid -> rules it guards
  std::vector<std::uint32_t> unguarded;                             // rule positions
};

namespace {

// Builds the nodes of one rule; returns the node id or an error message (without the rule).
class rule_builder {
 public:
  rule_builder(compiled_rules::impl& out, std::unordered_map<std::string, std::uint32_t>& pids,
               const compile_options& opts)
      : out_(out), pids_(pids), opts_(opts) {}

  expected<std::uint32_t, std::string> build(const condition_config& c, const std::string& path) {
    if (!c.group.empty() || !c.children.empty()) {
      if (c.group != "all" && c.group != "any")
        return unexpected{path + ": unknown group '" + c.group + "' (expected any or all)"};
      std::vector<std::uint32_t> kids;
      for (std::size_t i = 0; i < c.children.size(); ++i) {
        std::string child_path =
            path == "conditions" ? "conditions[" + std::to_string(i) + "]"
                                 : path + "." + c.group + "[" + std::to_string(i) + "]";
        auto k = build(c.children[i], child_path);
        if (!k)
          return k;
        kids.push_back(*k);
      }
      node n;
      n.kind = c.group == "all" ? node_kind::all : node_kind::any;
      n.first_child = static_cast<std::uint32_t>(out_.children.size());
      n.child_count = static_cast<std::uint32_t>(kids.size());
      out_.children.insert(out_.children.end(), kids.begin(), kids.end());
      n.cond = add_cond(path, c);
      out_.nodes.push_back(n);
      return static_cast<std::uint32_t>(out_.nodes.size() - 1);
    }
    std::string where = path + " (" + c.field + " " + c.op + " '" + c.value + "')";
    auto f = field_from(c.field);
    if (!f)
      return unexpected{where + ": unknown field '" + c.field + "'"};
    node n;
    n.field = *f;
    n.cond = add_cond(path, c);
    const std::string& op = c.op;
    if (op == "before" || op == "after") {
      if (*f != field_id::date)
        return unexpected{where + ": operator '" + op + "' applies only to the date field"};
      auto t = parse_rule_date(c.value);
      if (!t)
        return unexpected{where + ": invalid date (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)"};
      n.kind = op == "before" ? node_kind::before : node_kind::after;
      n.when = *t;
    } else if (*f == field_id::has_attachment) {
      if (op != "equals" && op != "not_equals")
        return unexpected{where + ": has_attachment takes equals or not_equals"};
      std::string v = c.value;
      for (auto& ch : v)
        ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
      if (v != "true" && v != "false")
        return unexpected{where + ": has_attachment compares with true or false"};
      n.kind = node_kind::attachment;
      n.want = v == "true";
      n.negate = op == "not_equals";
    } else {
      std::string pat;
      std::string q = RE2::QuoteMeta(c.value);
      if (op == "contains" || op == "not_contains")
        pat = "(?i:" + q + ")";
      else if (op == "equals" || op == "not_equals")
        pat = "^(?i:" + q + ")$";
      else if (op == "starts_with")
        pat = "^(?i:" + q + ")";
      else if (op == "ends_with")
        pat = "(?i:" + q + ")$";
      else if (op == "regex")
        pat = c.value;
      else
        return unexpected{where + ": unknown operator '" + op + "'"};
      n.kind = node_kind::set_leaf;
      n.negate = op.rfind("not_", 0) == 0;
      auto pid = add_pattern(*f, pat);
      if (!pid)
        return unexpected{where + ": " + pid.error()};
      n.pid = *pid;
    }
    out_.nodes.push_back(n);
    return static_cast<std::uint32_t>(out_.nodes.size() - 1);
  }

 private:
  std::uint32_t add_cond(const std::string& path, const condition_config& c) {
    out_.conds.push_back({path, c.group.empty() ? c.field : c.group, c.op, c.value});
    return static_cast<std::uint32_t>(out_.conds.size() - 1);
  }

  expected<std::uint32_t, std::string> add_pattern(field_id f, const std::string& pat) {
    std::string key;
    key += static_cast<char>('0' + static_cast<int>(f));
    key += pat;
    if (auto it = pids_.find(key); it != pids_.end())
      return it->second;
    auto alone = std::make_unique<RE2>(pat, quiet_options());
    if (!alone->ok())
      return unexpected{"invalid regex: " + alone->error()};
    auto fi = static_cast<std::size_t>(f);
    auto& set = out_.sets[fi];
    if (!set) {
      auto o = quiet_options();
      o.set_max_mem(opts_.max_mem_per_field);
      set = std::make_unique<RE2::Set>(o, RE2::UNANCHORED);
    }
    std::string err;
    // Wrapped so an alternation in one pattern cannot leak into the set's others.
    int local = set->Add("(?:" + pat + ")", &err);
    if (local < 0)
      return unexpected{"invalid regex: " + err};
    auto pid = static_cast<std::uint32_t>(out_.patterns.size());
    out_.patterns.push_back({f, static_cast<std::uint32_t>(local), std::move(alone)});
    out_.set_pids[fi].push_back(pid);
    pids_.emplace(std::move(key), pid);
    return pid;
  }

  compiled_rules::impl& out_;
  std::unordered_map<std::string, std::uint32_t>& pids_;
  const compile_options& opts_;
};

// A set of patterns at least one of which must match for the node to hold; nullopt when the
// node can hold without any (negations, dates, attachments, empty groups).
std::optional<std::vector<std::uint32_t>> guard_of(const compiled_rules::impl& m, std::uint32_t id) {
  const node& n = m.nodes[id];
  switch (n.kind) {
    case node_kind::set_leaf:
      if (n.negate)
        return std::nullopt;
      return std::vector<std::uint32_t>{n.pid};
    case node_kind::all: {
      std::optional<std::vector<std::uint32_t>> best;
      for (std::uint32_t i = 0; i < n.child_count; ++i) {
        auto g = guard_of(m, m.children[n.first_child + i]);
        if (g && (!best || g->size() < best->size()))
          best = std::move(g);
      }
      return best;
    }
    case node_kind::any: {
      if (n.child_count == 0)
        return std::nullopt;
      std::vector<std::uint32_t> all;
      for (std::uint32_t i = 0; i < n.child_count; ++i) {
        auto g = guard_of(m, m.children[n.first_child + i]);
        if (!g)
          return std::nullopt;
        all.insert(all.end(), g->begin(), g->end());
      }
      std::sort(all.begin(), all.end());
      all.erase(std::unique(all.begin(), all.end()), all.end());
      return all;
    }
    default:
      return std::nullopt;
  }
}

// What one message looks like to the rules: the truth of every set pattern, computed field by
// field, plus the direct facts.
struct message_view {
  const compiled_rules::impl& m;
  const mime::message& msg;
  std::string_view folder;
  std::string date_text;
  bool has_attachment = false;
  // Per set pattern: -1 = no match, else the first text that matched (the address form index
  // for address fields, 0 for the others).
  std::vector<std::int32_t> first_form;
  std::array<std::vector<std::string>, 4> forms;

  message_view(const compiled_rules::impl& m_, const mime::message& msg_, std::string_view folder_)
      : m(m_), msg(msg_), folder(folder_), first_form(m_.patterns.size(), -1) {
    if (msg.date)
      date_text = iso_date(*msg.date);
    // An inline part referenced by Content-ID is a resource of the HTML body (a logo); every
    // other part counts, including Apple Mail's inline PDFs.
    has_attachment = std::any_of(msg.attachments.begin(), msg.attachments.end(),
                                 [](const mime::attachment& a) { return !a.is_inline || a.content_id.empty(); });
    std::vector<int> hits;
    for (std::size_t fi = 0; fi < set_field_count; ++fi) {
      if (!m.sets[fi])
        continue;
      auto f = static_cast<field_id>(fi);
      if (is_address(f)) {
        const auto& list = f == field_id::from ? msg.from
                           : f == field_id::to ? msg.to
                           : f == field_id::cc ? msg.cc
                                               : msg.bcc;
        auto& fs = forms[fi];
        for (const auto& a : list) {
          fs.push_back(address_form(a));
          if (!a.display_name.empty())
            fs.push_back(a.email);
        }
        for (std::size_t k = 0; k < fs.size(); ++k)
          run_set(fi, fs[k], static_cast<std::int32_t>(k), hits);
      } else if (f == field_id::date) {
        if (msg.date)
          run_set(fi, date_text, 0, hits);
      } else {
        run_set(fi, text_of(f), 0, hits);
      }
    }
  }

  std::string_view text_of(field_id f) const {
    switch (f) {
      case field_id::subject: return trim(msg.subject);
      case field_id::body: return trim(msg.body_text);
      case field_id::folder: return folder;
      case field_id::date: return date_text;
      default: return {};
    }
  }

  void run_set(std::size_t fi, std::string_view text, std::int32_t form, std::vector<int>& hits) {
    hits.clear();
    RE2::Set::ErrorInfo info{};
    re2::StringPiece sp(text.data(), text.size());
    bool any = m.sets[fi]->Match(sp, &hits, &info);
    if (!any && info.kind != RE2::Set::kNoError) {
      // The DFA ran out of its memory budget: never a silent miss, test each pattern alone.
      for (auto pid : m.set_pids[fi])
        if (RE2::PartialMatch(sp, *m.patterns[pid].alone))
          mark(pid, form);
      return;
    }
    for (int local : hits)
      mark(m.set_pids[fi][static_cast<std::size_t>(local)], form);
  }

  void mark(std::uint32_t pid, std::int32_t form) {
    if (first_form[pid] < 0)
      first_form[pid] = form;
  }

  bool holds(std::uint32_t id) const {
    const node& n = m.nodes[id];
    switch (n.kind) {
      case node_kind::all:
        for (std::uint32_t i = 0; i < n.child_count; ++i)
          if (!holds(m.children[n.first_child + i]))
            return false;
        return true;
      case node_kind::any:
        if (n.child_count == 0)
          return true;
        for (std::uint32_t i = 0; i < n.child_count; ++i)
          if (holds(m.children[n.first_child + i]))
            return true;
        return false;
      case node_kind::set_leaf: return (first_form[n.pid] >= 0) != n.negate;
      case node_kind::before: return msg.date && *msg.date < n.when;
      case node_kind::after: return msg.date && *msg.date > n.when;
      case node_kind::attachment: return (has_attachment == n.want) != n.negate;
    }
    return false;
  }

  // Called only for a node that holds: records the leaves that made it hold.
  void explain(std::uint32_t id, std::vector<fired_condition>& out) const {
    const node& n = m.nodes[id];
    if (n.kind == node_kind::all) {
      for (std::uint32_t i = 0; i < n.child_count; ++i)
        explain(m.children[n.first_child + i], out);
      return;
    }
    if (n.kind == node_kind::any) {
      for (std::uint32_t i = 0; i < n.child_count; ++i) {
        auto c = m.children[n.first_child + i];
        if (holds(c)) {
          explain(c, out);
          return;
        }
      }
      return;
    }
    const cond_text& ct = m.conds[n.cond];
    fired_condition fc{ct.path, ct.field, ct.op, ct.value, {}};
    switch (n.kind) {
      case node_kind::before:
      case node_kind::after: fc.matched = date_text; break;
      case node_kind::attachment: fc.matched = has_attachment ? "true" : "false"; break;
      case node_kind::set_leaf:
        if (!n.negate)
          fc.matched = matched_text(n);
        break;
      default: break;
    }
    out.push_back(std::move(fc));
  }

  std::string matched_text(const node& n) const {
    auto fi = static_cast<std::size_t>(n.field);
    if (is_address(n.field)) {
      auto k = first_form[n.pid];
      return k >= 0 && static_cast<std::size_t>(k) < forms[fi].size() ? forms[fi][static_cast<std::size_t>(k)]
                                                                       : std::string{};
    }
    if (n.field == field_id::body) {
      std::string_view body = text_of(field_id::body);  // the text the set saw
      re2::StringPiece sp(body.data(), body.size()), hit;
      if (m.patterns[n.pid].alone->Match(sp, 0, body.size(), RE2::UNANCHORED, &hit, 1)) {
        auto b = static_cast<std::size_t>(hit.data() - body.data());
        return body_excerpt(body, b, b + hit.size());
      }
      return {};
    }
    std::string s(text_of(n.field));
    if (s.size() > 300)
      s = body_excerpt(s, 0, 0);
    return s;
  }
};

bool in_scope(const std::vector<std::string>& sorted, std::string_view v) {
  return sorted.empty() || std::binary_search(sorted.begin(), sorted.end(), v, std::less<>{});
}

} // namespace

compiled_rules::compiled_rules() = default;
compiled_rules::~compiled_rules() = default;
compiled_rules::compiled_rules(const compiled_rules&) = default;
compiled_rules& compiled_rules::operator=(const compiled_rules&) = default;
compiled_rules::compiled_rules(compiled_rules&&) noexcept = default;
compiled_rules& compiled_rules::operator=(compiled_rules&&) noexcept = default;

rules_stats compiled_rules::stats() const {
  rules_stats s;
  if (!impl_)
    return s;
  s.rules = impl_->rules.size();
  s.unguarded_rules = impl_->unguarded.size();
  s.set_patterns = impl_->patterns.size();
  return s;
}

expected<compiled_rules, rules_error> compile_rules(const std::vector<rule_config>& rules,
                                                    const compile_options& opts) {
  try {
    auto m = std::make_shared<compiled_rules::impl>();
    std::unordered_map<std::string, std::uint32_t> pids;
    rule_builder builder(*m, pids, opts);
    for (std::size_t i = 0; i < rules.size(); ++i) {
      const auto& rc = rules[i];
      if (!rc.active)
        continue;
      auto fail = [&](const std::string& what) {
        return unexpected{rules_error{"rule '" + rc.name + "': " + what}};
      };
      condition_config root = rc.root;
      if (root.group.empty() && root.field.empty())
        root.group = "all";  // a rule without conditions
      auto id = builder.build(root, "conditions");
      if (!id)
        return fail(id.error());
      compiled_rule r;
      r.index = i;
      r.name = rc.name;
      r.users = rc.users;
      r.folders = rc.folders;
      for (auto& f : r.folders)
        f = std::string(canonical_folder(f));
      std::sort(r.users.begin(), r.users.end());
      std::sort(r.folders.begin(), r.folders.end());
      r.actions = rc.actions;
      r.tickets.resize(r.actions.size());
      r.root = *id;
      for (std::size_t a = 0; a < r.actions.size(); ++a) {
        if (r.actions[a].ticket_regex.empty())
          continue;
        auto t = ticket_matcher::compile(r.actions[a].ticket_regex);
        if (!t)
          return fail("actions[" + std::to_string(a) + "] (" + r.actions[a].type + ") " + t.error().message);
        r.tickets[a] = std::move(*t);
      }
      m->rules.push_back(std::move(r));
    }
    for (std::size_t fi = 0; fi < set_field_count; ++fi)
      if (m->sets[fi] && !m->sets[fi]->Compile())
        return unexpected{rules_error{"rules: the conditions on one field do not fit the regex memory budget"}};
    m->guard_rules.resize(m->patterns.size());
    for (std::size_t r = 0; r < m->rules.size(); ++r) {
      auto g = guard_of(*m, m->rules[r].root);
      m->rules[r].guarded = g.has_value();
      if (!g)
        m->unguarded.push_back(static_cast<std::uint32_t>(r));
      else
        for (auto pid : *g)
          m->guard_rules[pid].push_back(static_cast<std::uint32_t>(r));
    }
    compiled_rules out;
    out.impl_ = std::move(m);
    return out;
  } catch (const std::exception& e) {
    return unexpected{rules_error{std::string("rules: ") + e.what()}};
  }
}

std::vector<rule_hit> evaluate(const compiled_rules& rules, const mime::message& msg,
                               std::string_view user, std::string_view folder) {
  std::vector<rule_hit> out;
  if (!rules.impl_ || rules.impl_->rules.empty())
    return out;
  const auto& m = *rules.impl_;
  try {
    folder = canonical_folder(folder);
    message_view view(m, msg, folder);
    std::vector<std::uint8_t> candidate(m.rules.size(), 0);
    for (auto r : m.unguarded)
      candidate[r] = 1;
    for (std::size_t pid = 0; pid < view.first_form.size(); ++pid)
      if (view.first_form[pid] >= 0)
        for (auto r : m.guard_rules[pid])
          candidate[r] = 1;
    for (std::size_t r = 0; r < m.rules.size(); ++r) {
      if (!candidate[r])
        continue;
      const auto& cr = m.rules[r];
      if (!in_scope(cr.users, user) || !in_scope(cr.folders, folder) || !view.holds(cr.root))
        continue;
      rule_hit hit;
      hit.rule_index = cr.index;
      hit.name = cr.name;
      hit.actions = cr.actions;
      hit.tickets = cr.tickets;
      view.explain(cr.root, hit.because);
      out.push_back(std::move(hit));
    }
  } catch (const std::exception&) {
    // Only allocation can fail here; the caller sees no rule fire rather than an exception.
    out.clear();
  }
  return out;
}

namespace {

// An active rule that applies to `user` (no users listed = everyone's).
bool applies_to(const rule_config& r, std::string_view user) {
  return r.active && (r.users.empty() || std::find(r.users.begin(), r.users.end(), user) != r.users.end());
}

bool reads_body(const condition_config& c) {
  if (c.group.empty())
    return c.field == "body";
  return std::any_of(c.children.begin(), c.children.end(), reads_body);
}

} // namespace

bool has_server_actions(const std::vector<rule_config>& rules, std::string_view user) {
  for (const auto& r : rules) {
    if (!applies_to(r, user))
      continue;
    for (const auto& a : r.actions)
      if (a.type == "move" || a.type == "delete" || a.type == "mark_read")
        return true;
  }
  return false;
}

std::optional<std::string> text_needed_by(const engine_config& engine, const std::vector<rule_config>& rules,
                                          std::string_view user) {
  if (engine.fetch_text == fetch_text_mode::always)
    return "[engine] fetch_text = \"always\"";
  for (const auto& r : rules) {
    if (!applies_to(r, user))
      continue;
    if (reads_body(r.root))
      return fmt::format("rule '{}' has a body condition", r.name);
    for (const auto& a : r.actions)
      if (a.type == "create_or_update_ticket")
        return fmt::format("rule '{}' creates or updates tickets (comments are the reply text)", r.name);
  }
  return std::nullopt;
}

// --- CRM linking -------------------------------------------------------------------------

namespace {

void add_once(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end())
    v.push_back(s);
}

// Ticket numbers are sequential per prefix, so only the writer can hand them out: the
// record carries a marker that store::write() replaces (storage/types.hpp).
std::string new_ticket(const action_config& a) { return std::string(storage::new_ticket_marker) + a.ticket_prefix; }
std::string root_ticket(const action_config& a, std::string_view root) {
  return fmt::format("{}{}/{}", storage::root_ticket_marker, a.ticket_prefix, root);
}

// The key of a thread's first message: References' first id, else In-Reply-To's; "" = none.
std::string thread_root_key(const mime::message& msg) {
  const auto& ids = !msg.references.empty() ? msg.references : msg.in_reply_to;
  if (ids.empty())
    return {};
  auto id = storage::normalise_message_id(ids.front());
  return id.empty() ? std::string{} : "<" + id + ">";
}

std::string describe(const fired_condition& c) {
  if (c.matched.empty())
    return fmt::format("{} {} {} '{}'", c.path, c.field, c.op, c.value);
  return fmt::format("{} {} {} '{}' matched '{}'", c.path, c.field, c.op, c.value, c.matched);
}

} // namespace

expected<crm_linker, rules_error> build_linker(const config& cfg, std::shared_ptr<const directory> dir) {
  std::vector<reference_pattern> patterns;
  for (auto& p : cfg.item_patterns)
    patterns.push_back({p.kind, p.regex});
  crm_linker l;
  l.dir = std::move(dir);
  auto refs = reference_matcher::build(cfg.items, patterns);
  if (!refs)
    return unexpected{rules_error{refs.error().message}};
  l.refs = std::make_shared<const reference_matcher>(std::move(refs.value()));
  auto rules = compile_rules(cfg.rules);
  if (!rules)
    return unexpected{rules.error()};
  l.rules = std::make_shared<const compiled_rules>(std::move(rules.value()));
  l.reply_marker = cfg.engine.reply_marker;
  return l;
}

storage::message_record link_message(const crm_linker& l, const mime::message& msg,
                                     const fetch_context& ctx) {
  auto r = match_message(*l.dir, msg, ctx);
  try {
    if (l.refs) {
      for (auto& h : l.refs->find(msg.subject)) {
        if (h.known) {
          if (std::find(r.items.begin(), r.items.end(), h.reference) == r.items.end()) {
            r.items.push_back(h.reference);
            r.reasons.push_back({"item", h.reference, fmt::format("subject token '{}' ({})", h.reference, h.kind)});
          }
        } else {
          r.reasons.push_back({"alert", h.reference, h.kind});
          r.warnings.push_back(fmt::format("unknown {} reference {} in subject", h.kind, h.reference));
        }
      }
    }
    if (!l.rules)
      return r;
    // Only ticket comments read it: extracted for those messages alone.
    std::optional<std::string> reply;
    auto reply_above = [&]() -> const std::string& {
      if (!msg.reply_above.empty() || msg.body_text.empty())
        return msg.reply_above;
      if (!reply)
        reply = mime::extract_reply_above(
          msg.body_text, l.reply_marker.empty() ? mime::parse_options{}.reply_marker : l.reply_marker);
      return *reply;
    };
    for (auto& hit : evaluate(*l.rules, msg, ctx.user, ctx.folder)) {
      const std::string rule{hit.name};
      for (auto& c : hit.because)
        r.reasons.push_back({"rule", rule, describe(c)});
      if (hit.because.empty())
        r.reasons.push_back({"rule", rule, "no conditions (always holds)"});
      for (std::size_t i = 0; i < hit.actions.size(); ++i) {
        const auto& a = hit.actions[i];
        if (a.type == "create_contact") {
          if (msg.from.empty() || msg.from.front().normalized.empty()) {
            r.reasons.push_back({"action", "create_contact", fmt::format("rule '{}': no sender", rule)});
            continue;
          }
          const auto& email = msg.from.front().normalized;
          auto at = email.rfind('@');
          auto domain = at == std::string::npos ? std::string_view{} : std::string_view{email}.substr(at + 1);
          if (l.dir->contacts_for(email) || l.dir->user_for(email) || l.dir->is_internal(domain)) {
            r.reasons.push_back({"action", "create_contact", fmt::format("rule '{}': sender {} is known", rule, email)});
            continue;
          }
          add_once(r.contacts, email);
          r.reasons.push_back({"contact_created", email, rule});
          if (!domain.empty() && !l.dir->is_freemail(domain)) {
            if (auto acc = l.dir->account_for_domain(domain)) {
              add_once(r.accounts, acc->name);
              r.reasons.push_back({"contact_account", email, acc->name});
            }
          }
        } else if (a.type == "create_or_update_ticket") {
          std::optional<std::string> number;
          if (i < hit.tickets.size() && !hit.tickets[i].pattern().empty())
            number = hit.tickets[i].find(msg.subject);
          if (number) {
            add_once(r.tickets, *number);
            r.reasons.push_back({"ticket", *number, fmt::format("rule '{}': number in subject", rule)});
            r.reasons.push_back({"comment", *number, reply_above()});
          } else if (std::string root = thread_root_key(msg); !root.empty() && root != r.key) {
            // A reply without a number in the subject: the ticket its thread's first message
            // has (looked up by the store), updated with a comment.
            auto n = root_ticket(a, root);
            add_once(r.tickets, n);
            r.reasons.push_back({"ticket", n, fmt::format("rule '{}': reply in the thread of {}", rule, root)});
            r.reasons.push_back({"comment", n, reply_above()});
          } else {
            auto n = new_ticket(a);
            add_once(r.tickets, n);
            r.reasons.push_back({"ticket", n, fmt::format("rule '{}': created", rule)});
            r.reasons.push_back({"ticket_status", n, a.status.empty() ? std::string{"Open"} : a.status});
            if (!a.assignee.empty())
              r.reasons.push_back({"ticket_assignee", n, a.assignee});
            if (!a.priority.empty())
              r.reasons.push_back({"ticket_priority", n, a.priority});
          }
        } else if (a.type == "move" || a.type == "delete" || a.type == "mark_read") {
          auto what = a.type == "move" ? fmt::format("move:{}", a.folder) : a.type;
          // Carried out by the mailbox once the message is durably tracked; the outcome is
          // an "action_result" reason (same target) written afterwards.
          r.reasons.push_back({"action", what, fmt::format("rule '{}': after the message is tracked", rule)});
        }
      }
    }
  } catch (const std::exception&) {
    r.warnings.push_back("rules: out of memory while linking; rule actions skipped");
  }
  return r;
}

} // namespace mscan::core
