// The console's connection to callcontrold: one Connect transport on the
// page's own origin that adds the signed-in user's bearer token to every
// call, and the generated service clients on top of it.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { CallControlService } from "../gen/callcontrol/v1/call_control_service_pb.js";
import { DeviceService } from "../gen/callcontrol/v1/device_service_pb.js";

export type Api = {
  calls: Client<typeof CallControlService>;
  devices: Client<typeof DeviceService>;
};

export function newApi(token: string, baseUrl = "/"): Api {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("Authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl, interceptors: [bearer] });
  return {
    calls: createClient(CallControlService, transport),
    devices: createClient(DeviceService, transport),
  };
}
