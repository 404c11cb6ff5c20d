// Conversions between the runtime's value types and their Cap'n Proto wire forms.
#pragma once

#include "runtime/actor_info.h"
#include "runtime/protocol.capnp.h"
#include "runtime/resources.h"

namespace tlt {

void ToProto(const NodeResources& r, proto::Resources::Builder out);
NodeResources FromProto(proto::Resources::Reader r);
void ToProto(const ResourceRequest& r, proto::ResourceRequest::Builder out);
ResourceRequest FromProto(proto::ResourceRequest::Reader r);
void ToProto(const PlacementOptions& p, proto::PlacementOptions::Builder out);
PlacementOptions FromProto(proto::PlacementOptions::Reader p);
void ToProto(const ActorInfo& a, proto::ActorInfo::Builder out);
ActorInfo FromProto(proto::ActorInfo::Reader a);
void ToProto(const NodeInfo& n, proto::NodeInfo::Builder out);
NodeInfo FromProto(proto::NodeInfo::Reader n);
void ToProto(const ActorEvent& e, proto::Event::Builder out);
ActorEvent FromProto(proto::Event::Reader e);

}  // namespace tlt
