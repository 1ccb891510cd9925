DROP TABLE inbound_updates;
DROP TABLE memories;
DROP TABLE messages;
DROP TABLE dialogs;
DROP TABLE users;
DROP TABLE persona_pictures;
DROP TABLE personas;
