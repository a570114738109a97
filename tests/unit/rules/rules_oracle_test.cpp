// Differential test: the compiled engine (RE2 sets, guards) against a direct, obviously-correct
// evaluation of the same random rules over the same random messages.
#include "core/rules.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

using namespace mscan;
using core::condition_config;

namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r)
    c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return r;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Regexes and what they mean, written out by hand (std::regex trips g++ 12 warnings under ASan).
bool has(std::string_view t, std::string_view w) { return t.find(w) != std::string_view::npos; }
const std::vector<std::string> regexes{"a[bc]d", "^Foo", "bar$", "(x|y)z", "b+a", "q\\d"};
bool regex_oracle(const std::string& re, std::string_view t) {
  if (re == "a[bc]d") return has(t, "abd") || has(t, "acd");
  if (re == "^Foo") return t.rfind("Foo", 0) == 0;
  if (re == "bar$") return t.size() >= 3 && t.substr(t.size() - 3) == "bar";
  if (re == "(x|y)z") return has(t, "xz") || has(t, "yz");
  if (re == "b+a") return has(t, "ba");
  for (std::size_t i = 0; i + 1 < t.size(); ++i)  // q\d
    if (t[i] == 'q' && t[i + 1] >= '0' && t[i + 1] <= '9')
      return true;
  return false;
}
const std::vector<std::string> words{"abd", "Foo", "bar", "xz", "bba", "q1", "Ab", "foo bar", "", "z"};
const std::vector<std::string> fields{"from", "to", "cc", "bcc", "subject", "body", "folder"};
const std::vector<std::string> ops{"contains", "not_contains", "equals", "not_equals", "starts_with",
                                   "ends_with", "regex"};

struct oracle {
  const mime::message& m;
  std::string_view folder;

  bool string_op(const std::string& op, std::string_view text, const std::string& v) const {
    auto t = lower(text), w = lower(v);
    if (op == "contains") return t.find(w) != std::string::npos;
    if (op == "equals") return t == w;
    if (op == "starts_with") return t.rfind(w, 0) == 0;
    if (op == "ends_with") return t.size() >= w.size() && t.compare(t.size() - w.size(), w.size(), w) == 0;
    if (op == "regex") return regex_oracle(v, text);
    return false;
  }

  bool leaf(const condition_config& c) const {
    if (c.field == "date")
      return m.date && (c.op == "before" ? *m.date < 1000 : *m.date > 1000);
    if (c.field == "has_attachment")
      return (!m.attachments.empty() == (c.value == "true")) != (c.op == "not_equals");
    bool neg = c.op.rfind("not_", 0) == 0;
    std::string op = neg ? c.op.substr(4) : c.op;
    std::vector<std::string> texts;
    if (c.field == "subject") texts.emplace_back(trim(m.subject));
    else if (c.field == "body") texts.emplace_back(trim(m.body_text));
    else if (c.field == "folder") texts.emplace_back(folder);
    else {
      const auto& list = c.field == "from" ? m.from : c.field == "to" ? m.to : c.field == "cc" ? m.cc : m.bcc;
      for (const auto& a : list) {
        texts.push_back(a.email);
        if (!a.display_name.empty())
          texts.push_back(a.display_name + " <" + a.email + ">");
      }
    }
    bool any = std::any_of(texts.begin(), texts.end(), [&](const std::string& t) { return string_op(op, t, c.value); });
    return any != neg;
  }

  bool holds(const condition_config& c) const {
    if (c.group == "all")
      return std::all_of(c.children.begin(), c.children.end(), [&](auto& k) { return holds(k); });
    if (c.group == "any")
      return c.children.empty() || std::any_of(c.children.begin(), c.children.end(), [&](auto& k) { return holds(k); });
    return leaf(c);
  }
};

struct generator {
  std::mt19937 rng;
  std::size_t pick(std::size_t n) { return rng() % n; }
  std::string word() { return words[pick(words.size())]; }

  condition_config condition(int depth) {
    condition_config c;
    if (depth < 3 && pick(4) == 0) {
      c.group = pick(2) ? "all" : "any";
      for (std::size_t i = 0, n = 1 + pick(3); i < n; ++i)
        c.children.push_back(condition(depth + 1));
      return c;
    }
    switch (pick(12)) {
      case 0: c.field = "date"; c.op = pick(2) ? "before" : "after"; c.value = "1970-01-01T00:16:40Z"; return c;
      case 1: c.field = "has_attachment"; c.op = pick(2) ? "equals" : "not_equals"; c.value = pick(2) ? "true" : "false"; return c;
      default: break;
    }
    c.field = fields[pick(fields.size())];
    c.op = ops[pick(ops.size())];
    c.value = c.op == "regex" ? regexes[pick(regexes.size())] : word();
    return c;
  }

  std::string text() {
    std::string s;
    for (std::size_t i = 0, n = pick(4); i < n; ++i)
      s += (i ? " " : "") + word();
    return pick(5) == 0 ? " " + s + "\n" : s;
  }

  mime::message message() {
    mime::message m;
    m.subject = text();
    m.body_text = text();
    for (auto* list : {&m.from, &m.to, &m.cc, &m.bcc})
      for (std::size_t i = 0, n = pick(3); i < n; ++i) {
        mime::address a;
        a.email = lower(word()) + "@" + lower(word()) + ".example";
        if (pick(2))
          a.display_name = text();
        list->push_back(a);
      }
    if (pick(4))
      m.date = pick(2) ? 500 : 2000;
    if (pick(2))
      m.attachments.push_back(mime::attachment{"a.pdf", "application/pdf", "", 1, false, false});
    return m;
  }
};

} // namespace

TEST_CASE("the compiled engine agrees with a direct evaluation on random rules and mail", "[unit]") {
  for (std::uint32_t seed = 1; seed <= 5; ++seed) {
    generator g{std::mt19937(seed)};
    std::vector<core::rule_config> rules;
    for (int i = 0; i < 300; ++i) {
      core::rule_config r;
      r.name = "r" + std::to_string(i);
      r.root.group = g.pick(2) ? "all" : "any";
      for (std::size_t k = 0, n = g.pick(4); k < n; ++k)
        r.root.children.push_back(g.condition(1));
      if (g.pick(4) == 0)
        r.users = {g.pick(2) ? "alice" : "bob"};
      if (g.pick(6) == 0)
        r.folders = {"INBOX"};
      rules.push_back(std::move(r));
    }
    auto rs = core::compile_rules(rules);
    INFO("seed " << seed << (rs ? "" : " " + rs.error().message));
    REQUIRE(rs);
    for (int k = 0; k < 300; ++k) {
      auto m = g.message();
      std::string user = g.pick(2) ? "alice" : "carol";
      std::string folder = g.pick(2) ? "INBOX" : "Sent foo";
      std::vector<std::string> want, got;
      oracle o{m, folder};
      for (const auto& r : rules) {
        bool in_scope = (r.users.empty() || r.users[0] == user) && (r.folders.empty() || r.folders[0] == folder);
        if (in_scope && o.holds(r.root))
          want.push_back(r.name);
      }
      for (const auto& h : core::evaluate(*rs, m, user, folder))
        got.emplace_back(h.name);
      INFO("message " << k << " subject '" << m.subject << "' body '" << m.body_text << "'");
      REQUIRE(got == want);
    }
  }
}
