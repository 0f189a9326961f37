// Preloaded with `node --import` before fauxqs starts. fauxqs binds every
// interface whatever FAUXQS_HOST says (that variable only shapes queue URLs),
// so this rewrites the host of every net.Server listen call to 127.0.0.1:
// test machines must never expose an emulator beyond loopback.
import net from 'node:net';

const LOOPBACK = '127.0.0.1';
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    // listen({port, host, ...}); a Unix socket path or a handle stays as is.
    if (first.path === undefined && first.handle === undefined && first._handle === undefined && first.fd === undefined) {
      args[0] = { ...first, host: LOOPBACK };
    }
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, cb])
    if (typeof args[1] === 'string') {
      args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK);
    }
  } else if (first === undefined || (typeof first === 'function')) {
    // listen() / listen(cb): a random port on every interface otherwise.
    args.unshift(0, LOOPBACK);
  }
  return listen.apply(this, args);
};
