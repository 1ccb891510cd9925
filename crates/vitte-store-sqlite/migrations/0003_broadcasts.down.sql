DROP TABLE broadcast_deliveries;
DROP TABLE broadcasts;
