#include "actors/matcher_actor.hpp"

#include "core/matcher.hpp"

#include <algorithm>

namespace mscan::actors {

using namespace mscan::atoms;

expected<matcher_settings, std::string> matcher_settings_for(const core::config& cfg) {
  auto dir = std::make_shared<const core::directory>(cfg);
  matcher_settings ms{dir, {}};
  // Rules and reference patterns are compiled once per config load and shared by every
  // matcher; main refuses a bad rule before we get here (exit 2), this is the backstop.
  auto linker = core::build_linker(cfg, dir);
  if (!linker)
    return unexpected{"config: " + linker.error().message};
  ms.refs = linker->refs;
  ms.rules = linker->rules;
  ms.parse.strip_subaddress = cfg.engine.strip_subaddress;
  if (!cfg.engine.reply_marker.empty())
    ms.parse.reply_marker = cfg.engine.reply_marker;
  return ms;
}

caf::behavior matcher_actor(caf::event_based_actor* self, matcher_settings settings, caf::actor writer) {
  auto linker = std::make_shared<core::crm_linker>(core::crm_linker{settings.dir, settings.refs, settings.rules});
  linker->reply_marker = settings.parse.reply_marker;
  auto parse = settings.parse;
  parse.reply_above = false;  // link_message extracts it for ticket comments only
  return {
    [=](match_atom, fetched_batch& in) {
      matched_batch out;
      out.user = in.user;
      out.seq = in.seq;
      out.reply_to = in.reply_to;
      out.checkpoints = std::move(in.checkpoints);
      out.uidls = std::move(in.uidls);
      out.records.reserve(in.messages.size());
      const core::crm_linker current = *linker;  // a reload mid-batch does not mix directories
      for (auto& m : in.messages) {
        auto parsed = mime::parse_message(m.raw, parse);
        core::fetch_context ctx{in.user, m.folder, m.uidvalidity, m.uid, m.size, m.internaldate};
        auto rec = core::link_message(current, parsed, ctx);
        if (m.truncated)
          rec.warnings.push_back("a text part was larger than the fetch limit: read in part");
        // Attachments were not downloaded: their sizes are the server's (same type, in order).
        std::vector<bool> used(m.server_attachments.size(), false);
        for (auto& a : rec.attachments) {
          for (std::size_t i = 0; i < m.server_attachments.size(); ++i) {
            if (!used[i] && m.server_attachments[i].type == a.type) {
              used[i] = true;
              a.size = m.server_attachments[i].size;
              break;
            }
          }
        }
        out.records.push_back(std::move(rec));
      }
      self->send(writer, write_atom::value, std::move(out));
    },
    [=](reload_atom, const core::crm_linker& next) {
      if (next.dir)
        *linker = next;
    },
  };
}

} // namespace mscan::actors
