#include "core/matcher.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace mscan::core {

namespace {

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end())
    v.push_back(s);
}

// ASCII only, as documented in matcher.hpp: std::isalnum is a locale-dependent libc call per
// subject byte.
bool token_char(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
         c == '_';
}

std::string_view domain_of(std::string_view email) {
  auto at = email.rfind('@');
  return at == std::string_view::npos ? std::string_view{} : email.substr(at + 1);
}

} // namespace

std::vector<std::string_view> subject_tokens(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && !token_char(static_cast<unsigned char>(s[i])))
      ++i;
    auto b = i;
    while (i < s.size() && token_char(static_cast<unsigned char>(s[i])))
      ++i;
    if (i > b) {
      auto tok = s.substr(b, i - b);
      while (!tok.empty() && (tok.back() == '-' || tok.back() == '_'))
        tok.remove_suffix(1);  // "OPP-1042-" at a sentence end
      if (!tok.empty())
        out.push_back(tok);
    }
  }
  return out;
}

storage::message_record match_message(const directory& dir, const mime::message& msg,
                                      const fetch_context& ctx) {
  storage::message_record r;
  r.message_id = msg.message_id;
  r.subject = msg.subject;
  r.date = msg.date.value_or(ctx.internaldate);
  r.size = ctx.size;
  if (!msg.from.empty())
    r.from = msg.from.front().email;
  for (auto& a : msg.to)
    r.to.push_back(a.email);
  for (auto& a : msg.cc)
    r.cc.push_back(a.email);
  r.key = storage::message_key(msg.message_id, r.date, ctx.size, r.from, r.subject);
  r.sightings.push_back({ctx.user, ctx.folder, ctx.uidvalidity, ctx.uid});
  r.users.push_back(ctx.user);
  r.reasons.push_back({"user", ctx.user, fmt::format("mailbox of {} ({})", ctx.user, ctx.folder)});
  for (auto& att : msg.attachments)
    r.attachments.push_back({att.name, att.type, att.size});
  r.warnings = msg.warnings;

  auto link_addresses = [&](const std::vector<mime::address>& list, std::string_view header) {
    for (auto& a : list) {
      if (a.normalized.empty())
        continue;
      if (auto contacts = dir.contacts_for(a.normalized)) {
        for (auto c : *contacts) {
          add_unique(r.contacts, c->email);
          r.reasons.push_back({"contact", c->email, fmt::format("{}: {}", header, a.email)});
          if (contacts->size() > 1)
            r.warnings.push_back(fmt::format("ambiguous contact: {} contacts share {}", contacts->size(), a.email));
          if (!c->account.empty() &&
              std::find(r.accounts.begin(), r.accounts.end(), c->account) == r.accounts.end()) {
            r.accounts.push_back(c->account);
            r.reasons.push_back({"account", c->account, fmt::format("contact {} belongs to it", c->email)});
          }
        }
      }
      auto domain = domain_of(a.normalized);
      if (domain.empty() || dir.is_internal(domain) || dir.is_freemail(domain))
        continue;
      if (auto acc = dir.account_for_domain(domain)) {
        if (std::find(r.accounts.begin(), r.accounts.end(), acc->name) == r.accounts.end()) {
          r.accounts.push_back(acc->name);
          r.reasons.push_back({"account", acc->name, fmt::format("domain {} in {}: {}", domain, header, a.email)});
        }
      }
    }
  };
  link_addresses(msg.from, "From");
  link_addresses(msg.to, "To");
  link_addresses(msg.cc, "Cc");
  link_addresses(msg.bcc, "Bcc");
  link_addresses(msg.reply_to, "Reply-To");

  // Thread parents (the writer's store resolves them: storage::store::write() makes the
  // message inherit the items and tickets of a tracked parent). References are capped: a
  // long thread's oldest ids add nothing the newest do not.
  std::vector<std::string> parents;
  for (auto& id : msg.in_reply_to)
    if (!id.empty() && std::find(parents.begin(), parents.end(), id) == parents.end()) {
      parents.push_back(id);
      r.reasons.push_back({"thread", id, "In-Reply-To"});
    }
  const std::size_t max_refs = 20;
  auto first = msg.references.size() > max_refs ? msg.references.end() - max_refs : msg.references.begin();
  for (auto it = first; it != msg.references.end(); ++it)
    if (!it->empty() && std::find(parents.begin(), parents.end(), *it) == parents.end()) {
      parents.push_back(*it);
      r.reasons.push_back({"thread", *it, "References"});
    }

  for (auto tok : subject_tokens(msg.subject)) {
    if (auto item = dir.item_for(tok)) {
      if (std::find(r.items.begin(), r.items.end(), item->reference) == r.items.end()) {
        r.items.push_back(item->reference);
        r.reasons.push_back({"item", item->reference, fmt::format("subject token '{}' ({})", tok, item->kind)});
      }
    }
  }
  return r;
}

} // namespace mscan::core
