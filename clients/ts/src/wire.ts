// `@reprise/client/wire`: the wire layer (@reprise/wire) as the client ships it,
// for code that speaks the protos directly.
export * from "@reprise/wire";
